import { ByteSize, Effect, Option } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { AppConfig } from "../layers/Config.ts"
import * as Metrics from "../services/Metrics.ts"
import { RateLimiter } from "../services/RateLimiter.ts"

/**
 * In front of every route: per-client rate limits (`429` + `Retry-After`) on
 * `/webhook` and on the admin and monitoring API, and a body size limit on
 * the admin API (the webhook route enforces `MAX_BODY_BYTES` itself). Health
 * checks are never limited.
 */
export const GuardLive = HttpRouter.middleware(
  Effect.gen(function*() {
    const limiter = yield* RateLimiter
    const { maxAdminBodyBytes } = yield* AppConfig
    const adminBodyLimit = ByteSize.bytes(maxAdminBodyBytes)
    return (httpEffect) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (request.url.startsWith("/monitoring/health")) return yield* httpEffect
        const kind = request.url.startsWith("/webhook") ? "webhook" : "admin"
        const decision = limiter.check(kind, Option.getOrElse(request.remoteAddress, () => "unknown"))
        if (!decision.allowed) {
          if (kind === "webhook") yield* Metrics.count(Metrics.webhooks, { result: "rate_limited" })
          return HttpServerResponse.jsonUnsafe({ detail: "too many requests" }, {
            status: 429,
            headers: { "retry-after": String(decision.retryAfter) }
          })
        }
        return yield* kind === "admin"
          ? Effect.provideService(httpEffect, HttpIncomingMessage.MaxBodySize, adminBodyLimit)
          : httpEffect
      })
  }),
  { global: true }
)
