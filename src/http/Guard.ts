import { ByteSize, Context, Effect, Layer, Option } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { AppConfig } from "../services/AppConfig.ts"
import * as Metrics from "../services/Metrics.ts"
import { throttledLog } from "../services/LogThrottle.ts"
import { RateLimiter, type RateLimitClass } from "../services/RateLimiter.ts"
import { type AccessNote, noteFor } from "./AccessNotes.ts"
import { WEBHOOK_RETRY_AFTER_SECONDS } from "./WebhookPath.ts"

/**
 * A client over its limit, and webhooks over `MAX_INFLIGHT_WEBHOOKS`, are logged once per this
 * interval (with how many refusals it left out).
 */
export const RATE_LIMIT_LOG_INTERVAL_MS = 10_000

/** A request turned away before its handler ran: its status, `detail` and headers. */
export interface Refusal {
  readonly status: number
  readonly detail: string
  readonly headers: Record<string, string>
}

/**
 * Who may come in: the per-client rate limits and the cap on webhooks handled at once. The router's
 * middleware asks it for every route but the health checks, the webhook intake for each POST.
 */
export class Admission extends Context.Service<Admission, {
  /** The client's rate limit: a refusal (counted, noted and logged) when it is over it. */
  limit(kind: RateLimitClass, client: string, note: AccessNote): Effect.Effect<Refusal | undefined>
  /**
   * `handle` in one of the `MAX_INFLIGHT_WEBHOOKS` webhook slots, or a refusal when all are taken. Over
   * the cap a webhook is answered before its body is read: under overload the work admitted stays
   * what the service can finish, and the rest costs little.
   */
  inflight<A, E, R>(note: AccessNote, handle: Effect.Effect<A, E, R>): Effect.Effect<A | Refusal, E, R>
}>()("chatico/http/Admission") {
  static readonly layer = Layer.effect(
    Admission,
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const { maxInflightWebhooks } = yield* AppConfig
      const logRefusal = throttledLog(RATE_LIMIT_LOG_INTERVAL_MS)
      let inflightWebhooks = 0
      const release = Effect.sync(() => {
        inflightWebhooks--
      })
      const busy: Refusal = {
        status: 503,
        detail: `${maxInflightWebhooks} webhooks are being handled (MAX_INFLIGHT_WEBHOOKS); retry later`,
        headers: { "retry-after": String(WEBHOOK_RETRY_AFTER_SECONDS) }
      }

      const limit = (kind: RateLimitClass, client: string, note: AccessNote) =>
        Effect.flatMap(limiter.check(kind, client), (decision): Effect.Effect<Refusal | undefined> => {
          if (decision.allowed) return Effect.undefined
          note.refused = "rate limited"
          const refusal: Refusal = { status: 429, detail: "too many requests", headers: { "retry-after": String(decision.retryAfter) } }
          return Effect.all([
            kind === "webhook" ? Metrics.count(Metrics.webhooks, { result: "rate_limited" }) : Effect.void,
            logRefusal(`${kind} ${client}`, (suppressed) =>
              Effect.logWarning(kind === "webhook" ? "webhook refused: too many requests" : "request refused: too many requests")
                .pipe(Effect.annotateLogs({ status: 429, client, limit: kind, refusals_not_logged: suppressed })))
          ], { discard: true }).pipe(Effect.as(refusal))
        })

      const inflight = <A, E, R>(note: AccessNote, handle: Effect.Effect<A, E, R>): Effect.Effect<A | Refusal, E, R> => {
        if (inflightWebhooks < maxInflightWebhooks) {
          inflightWebhooks++
          return Effect.ensuring(handle, release)
        }
        note.refused = busy.detail
        return Effect.all([
          Metrics.count(Metrics.webhooks, { result: "busy" }),
          logRefusal("webhook in flight", (suppressed) =>
            Effect.logWarning("webhook refused: too many in flight").pipe(
              Effect.annotateLogs({ status: 503, limit: maxInflightWebhooks, refusals_not_logged: suppressed })
            ))
        ], { discard: true }).pipe(Effect.as(busy))
      }

      return Admission.of({ limit, inflight })
    })
  )
}

/**
 * In front of every route the router serves but the health checks: per-client rate limits and the
 * admin API's body size limit (`/webhook` enforces `MAX_BODY_BYTES` itself; its POST never reaches
 * the router, see `Server.ts`).
 */
export const GuardLive = HttpRouter.middleware(
  Effect.gen(function*() {
    const admission = yield* Admission
    const { maxAdminBodyBytes } = yield* AppConfig
    const adminBodyLimit = ByteSize.bytes(maxAdminBodyBytes)
    return (httpEffect) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (request.url.startsWith("/monitoring/health")) return yield* httpEffect
        const kind = request.url.startsWith("/webhook") ? "webhook" : "admin"
        const client = Option.getOrElse(request.remoteAddress, () => "unknown")
        const refusal = yield* admission.limit(kind, client, noteFor(request.source))
        if (refusal !== undefined) {
          return HttpServerResponse.jsonUnsafe({ detail: refusal.detail }, { status: refusal.status, headers: refusal.headers })
        }
        if (kind === "admin") return yield* Effect.provideService(httpEffect, HttpIncomingMessage.MaxBodySize, adminBodyLimit)
        return yield* httpEffect
      })
  }),
  { global: true }
)
