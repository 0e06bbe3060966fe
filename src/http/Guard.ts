import { ByteSize, Effect, Option } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { AppConfig } from "../services/AppConfig.ts"
import * as Metrics from "../services/Metrics.ts"
import { throttledLog } from "../services/LogThrottle.ts"
import { RateLimiter } from "../services/RateLimiter.ts"
import { noteFor } from "./AccessNotes.ts"
import { WEBHOOK_RETRY_AFTER_SECONDS } from "./WebhookPath.ts"

/**
 * A client over its limit, and webhooks over `MAX_INFLIGHT_WEBHOOKS`, are logged once per this
 * interval (with how many refusals it left out).
 */
export const RATE_LIMIT_LOG_INTERVAL_MS = 10_000

/**
 * In front of every route but the health checks: per-client rate limits, the cap on webhooks
 * handled at once, and the admin API's body size limit (`/webhook` enforces `MAX_BODY_BYTES` itself).
 */
export const GuardLive = HttpRouter.middleware(
  Effect.gen(function*() {
    const limiter = yield* RateLimiter
    const { maxAdminBodyBytes, maxInflightWebhooks } = yield* AppConfig
    const adminBodyLimit = ByteSize.bytes(maxAdminBodyBytes)
    const logLimited = throttledLog(RATE_LIMIT_LOG_INTERVAL_MS)
    // Over the cap a webhook is answered before its body is read: under overload the work
    // admitted stays what the service can finish, and the rest costs little.
    let inflightWebhooks = 0
    const release = Effect.sync(() => {
      inflightWebhooks--
    })
    return (httpEffect) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (request.url.startsWith("/monitoring/health")) return yield* httpEffect
        const kind = request.url.startsWith("/webhook") ? "webhook" : "admin"
        const client = Option.getOrElse(request.remoteAddress, () => "unknown")
        const decision = yield* limiter.check(kind, client)
        if (!decision.allowed) {
          if (kind === "webhook") yield* Metrics.count(Metrics.webhooks, { result: "rate_limited" })
          noteFor(request.source).refused = "rate limited"
          yield* logLimited(`${kind} ${client}`, (suppressed) =>
            Effect.logWarning(kind === "webhook" ? "webhook refused: too many requests" : "request refused: too many requests")
              .pipe(Effect.annotateLogs({ status: 429, client, limit: kind, refusals_not_logged: suppressed })))
          return HttpServerResponse.jsonUnsafe({ detail: "too many requests" }, {
            status: 429,
            headers: { "retry-after": String(decision.retryAfter) }
          })
        }
        if (kind === "admin") return yield* Effect.provideService(httpEffect, HttpIncomingMessage.MaxBodySize, adminBodyLimit)
        if (request.method !== "POST") return yield* httpEffect
        if (inflightWebhooks >= maxInflightWebhooks) {
          yield* Metrics.count(Metrics.webhooks, { result: "busy" })
          const message = `${maxInflightWebhooks} webhooks are being handled (MAX_INFLIGHT_WEBHOOKS); retry later`
          noteFor(request.source).refused = message
          yield* logLimited("webhook in flight", (suppressed) =>
            Effect.logWarning("webhook refused: too many in flight").pipe(
              Effect.annotateLogs({ status: 503, limit: maxInflightWebhooks, refusals_not_logged: suppressed })
            ))
          return HttpServerResponse.jsonUnsafe({ detail: message }, {
            status: 503,
            headers: { "retry-after": String(WEBHOOK_RETRY_AFTER_SECONDS) }
          })
        }
        inflightWebhooks++
        return yield* Effect.ensuring(httpEffect, release)
      })
  }),
  { global: true }
)
