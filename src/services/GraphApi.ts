import { NodeHttpClient } from "@effect/platform-node"
import { Cause, Clock, Context, Duration, Effect, Exit, Layer, Option, Redacted, Result, Schedule, Schema, Semaphore } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { Headers, HttpClient, type HttpClientResponse, UrlParams } from "effect/http"
import { createHmac } from "node:crypto"
import { AppConfig, type OwnerResolution } from "./AppConfig.ts"
import { type CircuitState, makeGraphBudget } from "./GraphBudget.ts"
import { throttledLog } from "./LogThrottle.ts"
import * as Metrics from "./Metrics.ts"
import { RedisLink } from "./Redis.ts"
import {
  CircuitOpen,
  classify,
  decodeResponse,
  GraphApiError,
  type GraphApiFailure,
  NoOwner,
  NotConfigured,
  Permanent,
  RateLimited,
  readUsage,
  TokenInvalid,
  Transient
} from "./GraphAnswers.ts"

export { CIRCUIT_COOLDOWN_MAX_FACTOR, type CircuitState, rateShare, THROTTLE_PAUSE_MAX } from "./GraphBudget.ts"
export * from "./GraphAnswers.ts"

// ---------------------------------------------------------------------------------------------
// Policies.
// ---------------------------------------------------------------------------------------------

/** Transient failures are tried again after 250 ms, 500 ms and 1 s (±20 %); nothing else is. */
export const TRANSIENT_RETRIES = 3
const transientRetry = Schedule.exponential("250 millis", 2).pipe(
  Schedule.jittered,
  Schedule.upTo({ times: TRANSIENT_RETRIES }),
  Schedule.setInputType<GraphApiError>(),
  Schedule.while(({ input }) => input.reason._tag === "Transient")
)
/** Graph API calls in flight at once. */
export const MAX_CONCURRENT_CALLS = 16
/** A kind of Graph API failure is logged once per this interval (with how many it left out). */
export const GRAPH_FAILURE_LOG_INTERVAL_MS = 10_000
/** `appsecret_proof`: the lowercase hex HMAC-SHA256 of the access token, keyed with the app secret. */
export const appsecretProof = (token: Redacted.Redacted<string>, appSecret: Redacted.Redacted<string>) =>
  Redacted.make(createHmac("sha256", Redacted.value(appSecret)).update(Redacted.value(token)).digest("hex"), {
    label: "appsecret_proof"
  })

/** A media id as Meta writes them: digits only (it becomes a URL path segment). */
const MEDIA_ID = /^[0-9]{1,32}$/

// ---------------------------------------------------------------------------------------------
// The service.
// ---------------------------------------------------------------------------------------------

export interface MediaOwner {
  readonly mediaId: string
  readonly ownerId: string
  readonly username: string | null
}

export type TokenState = "not_needed" | "missing" | "unchecked" | "valid" | "invalid"

/** The Graph API check of `/monitoring/health`: `ok` is false when owners that need Meta cannot be resolved. */
export interface GraphApiHealth {
  readonly ok: boolean
  readonly error?: string
  readonly detail: {
    readonly mode: OwnerResolution
    readonly token: TokenState
    readonly circuit: CircuitState
    readonly paused_until: string | null
    readonly usage_percent: number | null
    readonly calls_per_second: number
    readonly last_error: string | null
  }
}

export class GraphApi extends Context.Service<GraphApi, {
  /** One `GET /{media-id}?fields=owner,username` within the budget, transient failures retried; `NoOwner` when Meta gives none. */
  mediaOwner(mediaId: string): Effect.Effect<MediaOwner, GraphApiError>
  /** Whether owners are asked from Meta at all: `auto` or `graph`, with an access token configured. */
  readonly enabled: boolean
  readonly health: Effect.Effect<GraphApiHealth>
}>()("chatico/services/GraphApi") {
  static readonly layerNoDeps = Layer.effect(
    GraphApi,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const client = yield* HttpClient.HttpClient
      const mode = config.ownerResolution
      const token = config.instagramAccessToken
      const needed = mode !== "entry"

      if (needed && Option.isNone(token)) {
        yield* Effect.logWarning(
          `INSTAGRAM_ACCESS_TOKEN is not set: OWNER_RESOLUTION=${mode} cannot ask the Graph API, so every event ` +
            "is routed by entry[].id until a token is configured"
        )
      }

      const credentials = Option.map(token, (t) => ({ token: t, proof: appsecretProof(t, config.instagramAppSecret) }))
      const secrets = [
        Redacted.value(config.instagramAppSecret),
        ...Option.match(credentials, {
          onNone: () => [],
          onSome: ({ proof, token }) => [Redacted.value(token), Redacted.value(proof)]
        })
      ]
      // Meta's messages never contain the token, but a detail string is the one
      // place a secret could slip into a log, a span or an error body.
      const scrub = (text: string) =>
        secrets.reduce((acc, secret) => (secret.length > 0 ? acc.split(secret).join("[redacted]") : acc), text)

      const budget = yield* makeGraphBudget({
        callsPerSecond: config.graphCallsPerSecond,
        burst: config.graphBurst,
        circuitThreshold: config.graphCircuitThreshold,
        circuitCooldown: config.graphCircuitCooldown
      }, yield* RedisLink)
      const throttleBackoff = budget.throttleBackoff(config.graphThrottlePause)
      // The token's state and the last error are this instance's view (for health and error details).
      let tokenState: TokenState = needed ? (Option.isSome(token) ? "unchecked" : "missing") : "not_needed"
      let tokenError: string | null = null
      let lastError: string | null = null

      const inFlight = Semaphore.makeUnsafe(MAX_CONCURRENT_CALLS)
      const takeSlot = (mediaId: string) =>
        Effect.flatMap(budget.acquire, Option.match({
          onNone: () => Effect.void,
          onSome: (paused) =>
            Effect.fail(
              new GraphApiError({
                mediaId,
                reason: new RateLimited({ retryAfterMillis: paused.retryAfterMillis, detail: `calls paused: ${paused.reason}` })
              })
            )
        }))

      /** What a finished lookup means to the two circuits: Meta answering closes them; only failures it may recover from count. */
      const outcomes = (exit: Exit.Exit<MediaOwner, GraphApiError | CircuitBreaker.CircuitBreakerError>) => {
        if (Exit.isSuccess(exit)) return { failures: CircuitBreaker.success, token: CircuitBreaker.success }
        const error = Cause.findErrorOption(exit.cause)
        if (Option.isNone(error) || !(error.value instanceof GraphApiError)) {
          return { failures: CircuitBreaker.ignored, token: CircuitBreaker.ignored }
        }
        switch (error.value.reason._tag) {
          case "NoOwner":
          case "Permanent":
            return { failures: CircuitBreaker.success, token: CircuitBreaker.success }
          case "Transient":
            return { failures: CircuitBreaker.failure(), token: CircuitBreaker.ignored }
          case "TokenInvalid":
            return { failures: CircuitBreaker.ignored, token: CircuitBreaker.failure() }
          default:
            return { failures: CircuitBreaker.ignored, token: CircuitBreaker.ignored }
        }
      }

      const circuitOpen = (mediaId: string, error: CircuitBreaker.CircuitBreakerError) => {
        const reason = error.reason
        const retryAfterMillis = reason._tag === "CircuitOpen" ? Duration.toMillis(reason.retryAfter) : 0
        const tokenCircuit = reason._tag !== "CircuitBreakerStoreError" && reason.key === "graph:token"
        return new GraphApiError({
          mediaId,
          reason: new CircuitOpen({
            retryAfterMillis,
            detail: reason._tag === "CircuitHalfOpen"
              ? "a probe call is under way; the others wait for its answer"
              : tokenCircuit
              ? `the access token was rejected (${tokenError ?? "code 190"}); calls wait for a probe`
              : `calls stopped after failed lookups in a row (last: ${lastError ?? "?"})`
          })
        })
      }

      // One line per kind of failure per interval: an outage does not flood the log.
      const logFailure = throttledLog(GRAPH_FAILURE_LOG_INTERVAL_MS)
      const recordOutcome = (failure: GraphApiFailure | undefined) =>
        Effect.gen(function*() {
          if (failure !== undefined && (failure._tag === "Permanent" || failure._tag === "RateLimited" || failure._tag === "Transient")) {
            yield* logFailure(failure._tag, (suppressed) =>
              Effect.logWarning("Graph API call failed").pipe(
                Effect.annotateLogs({ reason: failure._tag, detail: failure.detail, failures_not_logged: suppressed })
              ))
          }
          if (failure === undefined || failure._tag === "NoOwner" || failure._tag === "Permanent") {
            // Meta answered: the token works.
            if (tokenState === "invalid") yield* Effect.logInfo("Graph API access token accepted again")
            if (tokenState !== "not_needed" && tokenState !== "missing") tokenState = "valid"
            tokenError = null
            yield* budget.answered
            return
          }
          if (failure._tag === "CircuitOpen" || failure._tag === "NotConfigured") return
          lastError = failure.detail
          if (failure._tag === "TokenInvalid") {
            if (tokenState !== "invalid") {
              yield* Effect.logError(
                "Graph API rejected INSTAGRAM_ACCESS_TOKEN (code 190: expired or revoked): events that need a media " +
                  "owner stay pending until a valid token is configured"
              ).pipe(Effect.annotateLogs({ detail: failure.detail }))
            }
            tokenState = "invalid"
            tokenError = failure.detail
          }
        })

      const fail = (mediaId: string, reason: GraphApiFailure) => Effect.fail(new GraphApiError({ mediaId, reason }))

      // ---- one call.
      const urlParams = Option.map(credentials, ({ proof, token }) =>
        UrlParams.make([
          ["fields", "owner,username"],
          // Redacted values are sent as they are, and shown as redacted in spans and errors.
          ["access_token", token],
          ["appsecret_proof", proof]
        ]))

      const interpret = (mediaId: string, response: HttpClientResponse.HttpClientResponse, text: string) =>
        Effect.gen(function*() {
          const usage = readUsage(response.headers)
          if (usage.percent !== null) yield* budget.reportUsage(usage.percent)
          if (usage.regainMinutes > 0) {
            yield* budget.pause(usage.regainMinutes * 60_000, "estimated_time_to_regain_access in the usage headers")
          }
          const body = decodeResponse(text)
          const status = response.status
          const error = Option.getOrUndefined(body)?.error
          if (status >= 200 && status < 300 && error === undefined) {
            if (Option.isNone(body)) return yield* fail(mediaId, new Transient({ detail: `HTTP ${status}: undecodable body` }))
            const media = body.value
            if (media.owner !== undefined) {
              return { mediaId, ownerId: media.owner.id, username: media.username ?? null } satisfies MediaOwner
            }
            return yield* fail(
              mediaId,
              new NoOwner({
                username: media.username ?? null,
                detail: "the Graph API gives no owner for this media"
              })
            )
          }
          const what = scrub(
            [
              `HTTP ${status}`,
              error?.code === undefined ? undefined : `code ${error.code}`,
              error?.error_subcode === undefined ? undefined : `subcode ${error.error_subcode}`,
              error?.message
            ].filter((part) => part !== undefined).join(", ")
          )
          switch (classify(status, error)) {
            case "RateLimited": {
              const now = yield* Clock.currentTimeMillis
              const retryAfter = Option.flatMap(Headers.get(response.headers, "retry-after"), (value) =>
                Option.map(
                  Result.getSuccess(Headers.parseRetryAfter(value)),
                  (after) => Duration.toMillis(Headers.retryAfterDelay(after, now))
                ))
              const millis = usage.regainMinutes > 0
                ? usage.regainMinutes * 60_000
                : Option.getOrElse(retryAfter, throttleBackoff)
              // Meta's regain estimate already paused the calls above.
              if (usage.regainMinutes === 0) yield* budget.pause(millis, what)
              return yield* fail(mediaId, new RateLimited({ retryAfterMillis: millis, detail: what }))
            }
            case "TokenInvalid":
              return yield* fail(mediaId, new TokenInvalid({ detail: what }))
            case "Transient":
              return yield* fail(mediaId, new Transient({ detail: what }))
            case "Permanent":
              return yield* fail(mediaId, new Permanent({ code: error?.code ?? null, detail: what }))
          }
        })

      const callOnce = (mediaId: string, params: UrlParams.UrlParams) =>
        Effect.gen(function*() {
          const started = yield* Clock.currentTimeMillis
          const exchanged = yield* client.get(`${config.graphApiUrl}/${mediaId}`, { urlParams: params, acceptJson: true }).pipe(
            Effect.flatMap((response) => Effect.map(response.text, (text) => ({ response, text }))),
            Effect.timeout(config.graphTimeout),
            // Trace ids stay inside: Meta gets no `traceparent`/`b3`.
            Effect.provideService(HttpClient.TracerPropagationEnabled, false),
            Effect.mapError((error) =>
              new GraphApiError({
                mediaId,
                reason: new Transient({
                  detail: error._tag === "TimeoutError"
                    ? `no answer within ${Duration.format(config.graphTimeout)}`
                    : `request failed: ${error.reason._tag}`
                })
              })
            ),
            Effect.tapError((error) => Metrics.count(Metrics.graphCalls, { result: error.reason._tag }))
          )
          yield* Metrics.observe(Metrics.graphLatency, Metrics.seconds(started, yield* Clock.currentTimeMillis))
          return yield* interpret(mediaId, exchanged.response, exchanged.text).pipe(
            Effect.tap(() => Metrics.count(Metrics.graphCalls, { result: "Owner" })),
            Effect.tapError((error) => Metrics.count(Metrics.graphCalls, { result: error.reason._tag }))
          )
        })

      const mediaOwner = Effect.fn("GraphApi.mediaOwner")(function*(mediaId: string) {
        yield* Effect.annotateCurrentSpan({ "graph.media_id": mediaId })
        if (Option.isNone(urlParams)) {
          return yield* fail(mediaId, new NotConfigured({ detail: "INSTAGRAM_ACCESS_TOKEN is not set" }))
        }
        if (!MEDIA_ID.test(mediaId)) {
          return yield* fail(mediaId, new Permanent({ code: null, detail: "not a media id (digits only)" }))
        }
        const params = urlParams.value
        return yield* budget.guard(
          inFlight.withPermit(Effect.andThen(takeSlot(mediaId), callOnce(mediaId, params))).pipe(Effect.retry(transientRetry)),
          outcomes
        ).pipe(
          Effect.catchIf(
            (error) => error instanceof CircuitBreaker.CircuitBreakerError,
            (error) => Effect.fail(circuitOpen(mediaId, error))
          ),
          Effect.tap(() => recordOutcome(undefined)),
          Effect.tapError((error) => recordOutcome(error.reason))
        )
      })

      const health = Effect.gen(function*(): Effect.fn.Return<GraphApiHealth> {
        const circuit = yield* budget.circuit
        const pausedUntil = yield* budget.paused
        const detail = {
          mode,
          token: tokenState,
          circuit,
          paused_until: pausedUntil === null ? null : new Date(pausedUntil).toISOString(),
          usage_percent: budget.usagePercent(),
          calls_per_second: Math.round(budget.rate() * 100) / 100,
          last_error: lastError
        }
        // `graph` cannot do what it is configured for without a token; `auto`
        // (the default) still routes every owner a worker app serves, so it
        // only warns.
        if (tokenState === "missing") {
          const error = `INSTAGRAM_ACCESS_TOKEN is not set: OWNER_RESOLUTION=${mode} routes by entry[].id only`
          return mode === "graph" ? { ok: false, error, detail } : { ok: true, error, detail }
        }
        if (tokenState === "invalid") {
          return {
            ok: false,
            error: `the Graph API rejected the access token (${tokenError ?? "code 190"})`,
            detail
          }
        }
        return { ok: true, detail }
      })

      return GraphApi.of({ mediaOwner, enabled: needed && Option.isSome(token), health })
    })
  )

  static readonly layer = this.layerNoDeps.pipe(Layer.provide([NodeHttpClient.layerUndici, RedisLink.layer]))
}
