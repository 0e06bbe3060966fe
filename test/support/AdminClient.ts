import { Context, Effect, Schema } from "effect"
import { FetchHttpClient, HttpClient, HttpClientError, HttpClientRequest } from "effect/http"
import { HttpApi, HttpApiClient } from "effect/http-api"
import { Api } from "../../src/http/Api.ts"
import { ValidationBody } from "../../src/http/Errors.ts"
import { SECRET_KEY, TestApp } from "./TestApp.ts"

// A field the contract does not declare is refused, not dropped: it is drift too.
const StrictApi = Api
  .annotate(HttpApi.SuccessParseOptions, { onExcessProperty: "error" })
  .annotate(HttpApi.ErrorParseOptions, { onExcessProperty: "error" })

/** Where `answered` and `refused` learn the status of the response to their call. */
const LastStatus = Context.Reference<{ status: number }>("test/AdminClient/LastStatus", {
  defaultValue: () => ({ status: 0 })
})

/** A typed client of the admin and monitoring API, derived from the service's own `Api`; no token when `key` is null. */
export const makeAdminClient = (baseUrl: string, key: string | null) =>
  HttpApiClient.make(StrictApi, {
    baseUrl,
    transformClient: (client) =>
      client.pipe(
        HttpClient.mapRequest((request) => key === null ? request : HttpClientRequest.bearerToken(request, key)),
        // Sent as the raw requests are: no client span, no trace headers.
        HttpClient.transformResponse(Effect.provideService(HttpClient.TracerDisabledWhen, () => true)),
        HttpClient.tap((response) => Effect.map(Effect.service(LastStatus), (last) => { last.status = response.status }))
      )
  }).pipe(Effect.provide(FetchHttpClient.layer))

/** The client of the test app, with the admin token. */
export const AdminClient = Effect.flatMap(Effect.service(TestApp), (app) => makeAdminClient(app.baseUrl, SECRET_KEY))

/** A call's status with its decoded success; fails as the call does. */
export const answered = <A, E, R>(call: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const last = { status: 0 }
    const body = yield* Effect.provideService(call, LastStatus, last)
    return { status: last.status, body }
  })

type Undeclared = HttpClientError.HttpClientError | Schema.SchemaError
const isUndeclared = (error: unknown): error is Undeclared =>
  HttpClientError.isHttpClientError(error) || Schema.isSchemaError(error)

/** A call's status with the declared error it failed with; dies if it succeeded or failed otherwise. */
export const refused = <A, E, R>(call: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const last = { status: 0 }
    const error = yield* Effect.provideService(call, LastStatus, last).pipe(
      Effect.flatMap((body) => Effect.die(new Error(`expected a declared error, got ${last.status} ${JSON.stringify(body)}`))),
      Effect.flip,
      Effect.filterOrElse((error): error is Exclude<E, Undeclared> => !isUndeclared(error), Effect.die)
    )
    return { status: last.status, error }
  })

/** The problems of a 422 the client could not have sent (malformed input), read with the contract's schema. */
export const problemsOf = (body: unknown) => Schema.decodeUnknownSync(ValidationBody)(body).detail

/** The `loc` paths of a 422's problems, joined with dots. */
export const locsOf = (body: unknown) => problemsOf(body).map((problem) => problem.loc.join("."))
