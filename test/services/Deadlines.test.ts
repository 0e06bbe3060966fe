import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { DEADLINE_CHECK_INTERVAL, makeDeadlines } from "../../src/services/Deadlines.ts"

const expired = () => "expired" as const
const checkMillis = Duration.toMillis(DEADLINE_CHECK_INTERVAL)

describe("Deadlines", () => {
  it.effect("a wait fails once its timeout has passed, at most one check interval late; a completed one never does", () =>
    Effect.scoped(Effect.gen(function*() {
      const deadlines = yield* makeDeadlines<number, "expired">(Duration.seconds(2), expired)
      const late = yield* Deferred.make<number, "expired">()
      const answered = yield* Deferred.make<number, "expired">()
      const lateWait = yield* Effect.forkChild(deadlines.await(late))
      const answeredWait = yield* Effect.forkChild(deadlines.await(answered))
      yield* TestClock.adjust(Duration.millis(1_000))
      yield* Deferred.succeed(answered, 7)
      assert.deepStrictEqual(yield* Fiber.await(answeredWait), Exit.succeed(7))
      yield* TestClock.adjust(Duration.millis(1_000 - checkMillis))
      assert.isUndefined(lateWait.pollUnsafe(), "failed before its timeout")
      yield* TestClock.adjust(Duration.millis(2 * checkMillis))
      assert.deepStrictEqual(yield* Fiber.await(lateWait), Exit.fail(expired()))
      // Answering an expired wait changes nothing.
      assert.isFalse(yield* Deferred.succeed(late, 1))
    })))

  it.effect("the timeout runs from each wait's own start, also behind an older wait still open", () =>
    Effect.scoped(Effect.gen(function*() {
      const deadlines = yield* makeDeadlines<number, "expired">(Duration.seconds(1), expired)
      const waits = []
      for (let i = 0; i < 3; i++) {
        waits.push(yield* Effect.forkChild(deadlines.await(yield* Deferred.make<number, "expired">())))
        yield* TestClock.adjust(Duration.millis(500))
      }
      // Started at 0, 500 and 1,000 ms; now 1,500 ms.
      yield* TestClock.adjust(Duration.millis(checkMillis))
      assert.deepStrictEqual(waits.map((wait) => wait.pollUnsafe() === undefined), [false, false, true])
      yield* TestClock.adjust(Duration.millis(500))
      assert.deepStrictEqual(yield* Fiber.await(waits[2]!), Exit.fail(expired()))
    })))

  it.effect("thousands of waits answered out of order are each answered once, and none expires", () =>
    Effect.scoped(Effect.gen(function*() {
      const deadlines = yield* makeDeadlines<number, "expired">(Duration.seconds(1), expired)
      const open = yield* Deferred.make<number, "expired">()
      const first = yield* Effect.forkChild(deadlines.await(open))
      const deferreds = yield* Effect.forEach(Array.from({ length: 5_000 }), () => Deferred.make<number, "expired">())
      const fibers = yield* Effect.forEach(deferreds, (deferred) => Effect.forkChild(deadlines.await(deferred)))
      for (let i = deferreds.length - 1; i >= 0; i--) yield* Deferred.succeed(deferreds[i]!, i)
      yield* TestClock.adjust(Duration.millis(500))
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(results, deferreds.map((_, i) => i))
      yield* TestClock.adjust(Duration.millis(1_000))
      assert.deepStrictEqual(yield* Fiber.await(first), Exit.fail(expired()))
    })))
})
