import { Context, Effect, Layer } from "effect"
import { AppConfig } from "../layers/Config.ts"

/** Clients remembered per bucket; the least recently seen are forgotten first. */
export const MAX_TRACKED_CLIENTS = 10_000

export type RateLimitClass = "webhook" | "admin"

export interface Decision {
  readonly allowed: boolean
  /** Seconds until a request would be allowed again (when refused). */
  readonly retryAfter: number
}

interface Bucket {
  tokens: number
  updated: number
}

/** A token bucket per client: `rate` requests per second, bursts up to twice that. */
const makeBuckets = (rate: number) => {
  const buckets = new Map<string, Bucket>()
  const burst = rate * 2
  return (client: string, now: number): Decision => {
    if (rate <= 0) return { allowed: true, retryAfter: 0 }
    const bucket = buckets.get(client) ?? { tokens: burst, updated: now }
    buckets.delete(client)
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.updated) / 1000) * rate)
    bucket.updated = now
    buckets.set(client, bucket)
    if (buckets.size > MAX_TRACKED_CLIENTS) {
      const oldest = buckets.keys().next()
      if (!oldest.done) buckets.delete(oldest.value)
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return { allowed: true, retryAfter: 0 }
    }
    return { allowed: false, retryAfter: Math.max(1, Math.ceil((1 - bucket.tokens) / rate)) }
  }
}

/**
 * Per-client rate limits on `/webhook` and on the admin and monitoring API.
 * The webhook default is far above what one Meta app sends, so it only stops
 * floods; `0` turns a limit off.
 */
export class RateLimiter extends Context.Service<RateLimiter, {
  check(kind: RateLimitClass, client: string): Decision
}>()("chatico/services/RateLimiter") {
  static readonly layer = Layer.effect(
    RateLimiter,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const webhook = makeBuckets(config.rateLimitWebhook)
      const admin = makeBuckets(config.rateLimitAdmin)
      return RateLimiter.of({
        check: (kind, client) => (kind === "webhook" ? webhook : admin)(client, Date.now())
      })
    })
  )
}
