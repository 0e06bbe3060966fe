import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { AppConfig } from "../../src/services/AppConfig.ts"
import { BURST_SECONDS, type RateLimitClass, RateLimiter } from "../../src/services/RateLimiter.ts"
import { RedisLink } from "../../src/services/Redis.ts"
import { testConfig } from "../support/TestApp.ts"

/** A RateLimiter without Redis (each bucket is this instance's own), built on the test's clock. */
const makeLimiter = Effect.map(
  Layer.build(
    RateLimiter.layerNoDeps.pipe(
      Layer.provide(RedisLink.layer),
      Layer.provide(AppConfig.layerWith(testConfig("postgres://postgres@127.0.0.1:5432/unused", { rateLimitWebhook: 5, rateLimitAdmin: 0 })))
    )
  ),
  (context) => Context.get(context, RateLimiter)
)

describe("RateLimiter", () => {
  it.effect("a client bursts to BURST_SECONDS of its rate, then gets one request per 1/rate; each client has its own bucket", () =>
    Effect.gen(function*() {
      const limiter = yield* makeLimiter
      const allowed = (client: string, n: number, kind: RateLimitClass = "webhook") =>
        Effect.forEach(Array.from({ length: n }), () => Effect.map(limiter.check(kind, client), (d) => d.allowed))
      assert.deepStrictEqual(yield* allowed("a", 5 * BURST_SECONDS), Array.from({ length: 5 * BURST_SECONDS }, () => true))
      assert.deepStrictEqual(yield* limiter.check("webhook", "a"), { allowed: false, retryAfter: 1 })
      assert.deepStrictEqual(yield* allowed("b", 1), [true])
      // A limit of 0 is off.
      assert.deepStrictEqual(yield* allowed("a", 20, "admin"), Array.from({ length: 20 }, () => true))
      // At 5 per second the next token is 200 ms away, and there is one.
      yield* TestClock.adjust(199)
      assert.deepStrictEqual(yield* allowed("a", 1), [false])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* allowed("a", 2), [true, false])
      // A quiet minute refills the burst, no more.
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(yield* allowed("a", 5 * BURST_SECONDS + 1), [...Array.from({ length: 5 * BURST_SECONDS }, () => true), false])
    }))
})
