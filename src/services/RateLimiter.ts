import { Clock, Context, Duration, Effect, Layer } from "effect"
import { RateLimiter as SharedLimiter, Redis } from "effect/persistence"
import { AppConfig } from "./AppConfig.ts"
import { RedisLink } from "./Redis.ts"
import { fullBucket, type TokenBucket, takeToken } from "./TokenBucket.ts"

/** Clients remembered per bucket; the least recently seen are forgotten first. */
export const MAX_TRACKED_CLIENTS = 10_000
/** A request waits at most this for the shared limit; then it is judged by the local one (ingest never waits on Redis). */
export const SHARED_CHECK_TIMEOUT = Duration.millis(100)
/** A client may burst to this many seconds' worth of its rate. */
export const BURST_SECONDS = 2

export type RateLimitClass = "webhook" | "admin"

export interface Decision {
  readonly allowed: boolean
  /** Seconds until a request would be allowed again (when refused). */
  readonly retryAfter: number
}

const allowed: Decision = { allowed: true, retryAfter: 0 }

/**
 * This instance's own token bucket per client, bounded to MAX_TRACKED_CLIENTS
 * (effect's memory store never forgets a key, so it is not used here).
 */
const makeBuckets = () => {
  const buckets = new Map<string, TokenBucket>()
  return (client: string, now: number, rate: number): Decision => {
    const burst = rate * BURST_SECONDS
    const bucket = buckets.get(client) ?? fullBucket(burst, now)
    buckets.delete(client)
    buckets.set(client, bucket)
    if (buckets.size > MAX_TRACKED_CLIENTS) {
      const oldest = buckets.keys().next()
      if (!oldest.done) buckets.delete(oldest.value)
    }
    const waitMs = takeToken(bucket, now, rate, burst)
    return waitMs === 0 ? allowed : { allowed: false, retryAfter: Math.max(1, Math.ceil(waitMs / 1000)) }
  }
}

/** Per-client limits on `/webhook` and the API (`0` is off): shared through Redis when it answers, else a share each. */
export class RateLimiter extends Context.Service<RateLimiter, {
  check(kind: RateLimitClass, client: string): Effect.Effect<Decision>
}>()("chatico/services/RateLimiter") {
  static readonly layerNoDeps = Layer.effect(
    RateLimiter,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const link = yield* RedisLink
      // Taken once, so a request's check reads the time without an effect of its own.
      const clock = yield* Clock.Clock
      const local = { webhook: makeBuckets(), admin: makeBuckets() }
      const shared = yield* SharedLimiter.make.pipe(
        Effect.provideContext(
          yield* Layer.build(
            SharedLimiter.layerStoreRedis({ prefix: `${link.prefix}clients:` }).pipe(
              Layer.provide(Layer.succeed(Redis.Redis, link.redis))
            )
          )
        )
      )

      const check = (kind: RateLimitClass, client: string): Effect.Effect<Decision> => {
        const rate = kind === "webhook" ? config.rateLimitWebhook : config.rateLimitAdmin
        if (rate <= 0) return Effect.succeed(allowed)
        const locally = Effect.sync(() => local[kind](client, clock.currentTimeMillisUnsafe(), rate * link.share()))
        if (!link.shared()) return locally
        return shared.consume({
          algorithm: "token-bucket",
          onExceeded: "fail",
          key: `${kind}:${client}`,
          limit: rate * BURST_SECONDS,
          window: Duration.seconds(BURST_SECONDS)
        }).pipe(
          Effect.as(allowed),
          Effect.timeoutOrElse({ duration: SHARED_CHECK_TIMEOUT, orElse: () => locally }),
          // Redis failing (or too slow) decides nothing: this request is judged locally.
          Effect.catch((error) =>
            error.reason._tag === "RateLimitExceeded"
              ? Effect.succeed<Decision>({
                allowed: false,
                retryAfter: Math.max(1, Math.ceil(Duration.toMillis(error.reason.retryAfter) / 1000))
              })
              : locally
          )
        )
      }
      return RateLimiter.of({ check })
    })
  )

  static readonly layer = this.layerNoDeps.pipe(Layer.provide(RedisLink.layer))
}
