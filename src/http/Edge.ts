import { Cause, Context, Effect, Option } from "effect"
import { HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import { STATUS_CODES } from "node:http"
import { AppConfig } from "../services/AppConfig.ts"
import * as Metrics from "../services/Metrics.ts"
import { type AccessNote, takeNote } from "./AccessNotes.ts"
import { allowedMethods } from "./RouteTable.ts"

/** The route label of a request no route matched (bounded cardinality for metrics). */
export const UNMATCHED_ROUTE = "unmatched"

const statusText = (status: number) => STATUS_CODES[status] ?? "Error"

const detail = (status: number, message: string, headers?: Record<string, string>) =>
  HttpServerResponse.jsonUnsafe({ detail: message }, { status, ...(headers === undefined ? {} : { headers }) })

const pathOf = (url: string) => {
  const query = url.indexOf("?")
  return query === -1 ? url : url.slice(0, query)
}

/** FastAPI's answer to an unknown path (404) or a known path with another method (405 + `Allow`). */
const notFound = (request: HttpServerRequest.HttpServerRequest) => {
  const allowed = allowedMethods(pathOf(request.url))
  return allowed.length === 0
    ? detail(404, "Not Found")
    : detail(405, "Method Not Allowed", { allow: allowed.join(", ") })
}

const isRouteNotFound = (cause: Cause.Cause<unknown>) =>
  cause.reasons.some((reason) =>
    reason._tag === "Fail" && reason.error instanceof HttpServerError.HttpServerError &&
    reason.error.reason._tag === "RouteNotFound"
  )

/** Longest plain-text error message kept as the `detail` of its JSON replacement. */
const MAX_TEXT_DETAIL = 500

const textOf = (body: HttpServerResponse.HttpServerResponse["body"]) => {
  if (body._tag === "Uint8Array" && body.body.length <= MAX_TEXT_DETAIL) return new TextDecoder().decode(body.body)
  if (body._tag === "Raw" && typeof body.body === "string" && body.body.length <= MAX_TEXT_DETAIL) return body.body
  return undefined
}

/**
 * An error answer that is not JSON (an empty 404 from the router, a plain-text
 * 415 from the body parser) gets FastAPI's `{"detail": …}`, keeping its text.
 */
const withDetail = (response: HttpServerResponse.HttpServerResponse) => {
  if (response.status < 400) return response
  const contentType = response.body._tag === "Empty" ? undefined : response.body.contentType
  if (contentType !== undefined && contentType.startsWith("application/json")) return response
  const text = textOf(response.body)?.trim()
  const message = text === undefined || text.length === 0 ? statusText(response.status) : text
  return HttpServerResponse.setBody(response, HttpServerResponse.jsonUnsafe({ detail: message }).body)
}

// `/worker-apps/:id` → `/worker-apps/{id}`, as the OpenAPI document names it.
const templateOf = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")

/** The route template the router matched for this request, read once the handler is done. */
const matchedRoute = Effect.withFiber((fiber) => {
  const route = Context.getOption(fiber.context, HttpRouter.RouteContext)
  return Effect.succeed(Option.isSome(route) ? templateOf(route.value.route.path) : UNMATCHED_ROUTE)
})

/** One answered request, as its access log line and the HTTP metrics see it. */
export interface Answered {
  readonly method: string
  readonly route: string
  readonly status: number
  readonly seconds: number
  readonly client: string
  readonly note: AccessNote | undefined
}

const accessLine = ({ client, method, note, route, seconds, status }: Answered) => {
  const annotations: Record<string, unknown> = {
    method,
    route,
    status,
    duration_ms: Math.round(seconds * 100_000) / 100,
    client
  }
  if (note?.events !== undefined) annotations.events = note.events
  if (note?.duplicates !== undefined) annotations.duplicates = note.duplicates
  if (note?.refused !== undefined) annotations.refused = note.refused
  // A webhook's server span is its own (not the fiber's): its ids come with the note.
  if (note?.traceId !== undefined) annotations.trace_id = note.traceId
  if (note?.spanId !== undefined) annotations.span_id = note.spanId
  return Effect.logInfo("request").pipe(Effect.annotateLogs(annotations))
}

/** The HTTP metrics of an answered request and, with `ACCESS_LOG` on, its access log line. */
export const recordAnswered = (answered: Answered, accessLog: boolean) => {
  const metrics = Metrics.updateAll([
    Metrics.added(Metrics.httpRequests, { route: answered.route, status: String(answered.status) }),
    Metrics.observed(Metrics.httpDuration, answered.seconds, { route: answered.route })
  ])
  return accessLog ? Effect.andThen(metrics, accessLine(answered)) : metrics
}

/** Whether access log lines are written: `ACCESS_LOG` on and `LOG_LEVEL` at info or below (a line never printed is not built). */
export const accessLogOn = ({ accessLog, logLevel }: { readonly accessLog: boolean; readonly logLevel: string }) =>
  accessLog && (logLevel === "Info" || logLevel === "Debug")

/** In front of every route: errors in FastAPI's shape, one access log line per request, the HTTP metrics. */
export const EdgeLive = HttpRouter.middleware(
  Effect.gen(function*() {
    const accessLog = accessLogOn(yield* AppConfig)
    return (httpEffect) =>
      Effect.gen(function*() {
        const started = performance.now()
        const request = yield* HttpServerRequest.HttpServerRequest
        const answered = yield* httpEffect.pipe(
          Effect.catchCause((cause) => {
            if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
            if (isRouteNotFound(cause)) return Effect.succeed(notFound(request))
            return Effect.flatMap(HttpServerError.causeResponse(cause), ([response, rest]) =>
              response.status >= 500
                ? Effect.as(Effect.logError("request failed", rest), response)
                : Effect.succeed(response))
          })
        )
        const response = withDetail(answered)
        const route = yield* matchedRoute
        const seconds = (performance.now() - started) / 1000
        yield* recordAnswered({
          method: request.method,
          route,
          status: response.status,
          seconds,
          client: Option.getOrElse(request.remoteAddress, () => "unknown"),
          note: takeNote(request.source)
        }, accessLog)
        return response
      })
  }),
  { global: true }
)
