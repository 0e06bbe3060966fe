import { Clock, Deferred, Duration, Effect, type Scope } from "effect"

/** How often waits past their deadline are failed: a wait fails at most this long after its timeout. */
export const DEADLINE_CHECK_INTERVAL = Duration.millis(250)

/** Waits left behind an older one still waiting before the list is compacted. */
const COMPACT_AFTER = 1024

export interface Deadlines<A, E> {
  /** Waits for `deferred`; once the timeout has passed since this call, it fails with the error of `expired`. */
  await(deferred: Deferred.Deferred<A, E>): Effect.Effect<A, E>
}

/**
 * Timeouts for many waits of one length without a timer and two fibers per wait: `Effect.timeout`
 * races each wait with a sleep, a measured share of the CPU per webhook (README, "Performance").
 * Each wait's `Deferred` is listed with its deadline, and one fiber in the scope fails those past
 * it. The timeout is the same for all, so deadlines are in the order the waits began and each check
 * reads from the front. The list holds at most the waits begun within one timeout.
 */
export const makeDeadlines = <A, E>(timeout: Duration.Duration, expired: () => E): Effect.Effect<Deadlines<A, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const timeoutMillis = Duration.toMillis(timeout)
    let waits: Array<{ readonly deferred: Deferred.Deferred<A, E>; readonly deadline: number }> = []
    let head = 0

    const expire = Effect.sync(() => {
      const now = clock.currentTimeMillisUnsafe()
      while (head < waits.length) {
        const wait = waits[head]!
        if (!Deferred.isDoneUnsafe(wait.deferred)) {
          if (wait.deadline > now) break
          Deferred.doneUnsafe(wait.deferred, Effect.fail(expired()))
        }
        head++
      }
      if (head === waits.length) {
        waits = []
        head = 0
      } else if (head > COMPACT_AFTER && head * 2 > waits.length) {
        waits = waits.slice(head)
        head = 0
      }
    })
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(DEADLINE_CHECK_INTERVAL), expire)))

    return {
      await: (deferred) => {
        waits.push({ deferred, deadline: clock.currentTimeMillisUnsafe() + timeoutMillis })
        return Deferred.await(deferred)
      }
    }
  })
