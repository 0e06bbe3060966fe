import { Clock, Context, Duration, Effect, Exit, Layer, Option, Schedule, Semaphore, Stream } from "effect"
import { CircuitBreaker, RateLimiter, Redis } from "effect/persistence"
import type { RedisLink } from "./Redis.ts"
import { fullBucket, takeToken } from "./TokenBucket.ts"

/** Repeated throttling doubles the pause, up to this. */
export const THROTTLE_PAUSE_MAX = Duration.minutes(15)
/** A circuit that keeps failing its probe stays open longer each time, up to this many cooldowns. */
export const CIRCUIT_COOLDOWN_MAX_FACTOR = 8
/** Usage (of any quota in Meta's headers) above which the call rate is lowered. */
export const USAGE_SLOWDOWN_PERCENT = 75
/** The lowest share of the configured rate kept while usage is near 100 %. */
export const MIN_RATE_SHARE = 0.05
/** A usage report shared through Redis counts for this long (every answer of Meta carries a new one). */
export const SHARED_USAGE_TTL = Duration.minutes(1)
/** A call that found the shared bucket empty asks again after Redis's retry time, at least this long. */
export const SHARED_SLOT_MIN_WAIT_MS = 10
/** The circuit keys: lookups failing in a row, and the access token rejected (one rejection is enough). */
export const FAILURES_CIRCUIT = "graph:failures"
export const TOKEN_CIRCUIT = "graph:token"

/**
 * The share of the configured call rate to use at a usage percentage: all of
 * it up to 75 %, then in proportion to the headroom left (40 % of it at 90 %).
 */
export const rateShare = (usagePercent: number | null) => {
  if (usagePercent === null || usagePercent <= USAGE_SLOWDOWN_PERCENT) return 1
  return Math.max(MIN_RATE_SHARE, (100 - usagePercent) / (100 - USAGE_SLOWDOWN_PERCENT))
}

export type CircuitState = "closed" | "open" | "half_open"

export interface Paused {
  readonly retryAfterMillis: number
  readonly reason: string
}

/** What one finished lookup means to each circuit. */
export interface Outcomes {
  readonly failures: CircuitBreaker.Outcome
  readonly token: CircuitBreaker.Outcome
}

export interface BudgetOptions {
  readonly callsPerSecond: number
  readonly burst: number
  readonly circuitThreshold: number
  readonly circuitCooldown: Duration.Duration
}

// Hand-written (effect has no part for it): the pause is a key that lives as long as the pause,
// only ever lengthened, so every instance reads how much of it is left whatever its clock says.
const pauseScript = Redis.script(
  (key: string, millis: number, reason: string) => [key, millis, reason],
  {
    numberOfKeys: 1,
    lua: `
if redis.call("PTTL", KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[1])
return 1
`
  }
).withReturnType<number>()

/** The pause left (ms, or a negative PTTL when none), its reason, and the last usage percentage ("" when none). */
const readScript = Redis.script(
  (pauseKey: string, usageKey: string) => [pauseKey, usageKey],
  {
    numberOfKeys: 2,
    lua: `
return { redis.call("PTTL", KEYS[1]), redis.call("GET", KEYS[1]) or "", redis.call("GET", KEYS[2]) or "" }
`
  }
).withReturnType<readonly [number, string, string]>()

/** Bucket, Meta's pause and usage, two circuits: shared through Redis when it answers, else this instance's share (README). */
export const makeGraphBudget = Effect.fnUntraced(function*(options: BudgetOptions, link: RedisLink["Service"]) {
  const redis = Layer.succeed(Redis.Redis, link.redis)
  const prefix = `${link.prefix}graph:`
  const pauseKey = `${prefix}pause`
  const usageKey = `${prefix}usage`
  const cooldownMillis = Duration.toMillis(options.circuitCooldown)

  const circuitsOn = (store: Context.Context<CircuitBreaker.CircuitBreakerStore>) =>
    Effect.all({
      failures: CircuitBreaker.make({
        tripPolicy: CircuitBreaker.consecutive(options.circuitThreshold),
        openDuration: Schedule.exponential(options.circuitCooldown),
        maxOpenDuration: Duration.millis(cooldownMillis * CIRCUIT_COOLDOWN_MAX_FACTOR),
        onStoreError: "fail"
      }),
      token: CircuitBreaker.make({
        tripPolicy: CircuitBreaker.consecutive(1),
        openDuration: Schedule.exponential(options.circuitCooldown),
        maxOpenDuration: Duration.millis(cooldownMillis * CIRCUIT_COOLDOWN_MAX_FACTOR),
        onStoreError: "fail"
      })
    }).pipe(Effect.provideContext(store))
  const local = yield* circuitsOn(yield* Layer.build(CircuitBreaker.layerStoreMemory()))
  const shared = yield* circuitsOn(
    yield* Layer.build(CircuitBreaker.layerStoreRedis({ prefix: `${prefix}circuit:` }).pipe(Layer.provide(redis)))
  )
  const sharedLimiter = yield* RateLimiter.make.pipe(
    Effect.provideContext(yield* Layer.build(RateLimiter.layerStoreRedis({ prefix: `${prefix}rate:` }).pipe(Layer.provide(redis))))
  )
  const readShared = link.redis.eval(readScript)
  const writePause = link.redis.eval(pauseScript)
  // Taken once, so the bucket and the pause read the time synchronously on every call.
  const clock = yield* Clock.Clock
  const now = () => clock.currentTimeMillisUnsafe()

  let usagePercent: number | null = null
  let pausedUntil = 0
  let pauseReason = ""
  let throttleStreak = 0
  const own = fullBucket(options.burst, now())

  // The shared bucket holds the whole budget; this instance's own bucket (Redis away, or one Redis call
  // failed) holds its share of it.
  const rateAt = (share: number) => options.callsPerSecond * rateShare(usagePercent) * share
  const capacityAt = (share: number) => rateShare(usagePercent) < 1 ? 1 : Math.max(1, Math.floor(options.burst * share))
  const rate = () => rateAt(link.shared() ? 1 : link.share())

  yield* Stream.merge(local.failures.transitions, Stream.merge(local.token.transitions, Stream.merge(
    shared.failures.transitions,
    shared.token.transitions
  ))).pipe(
    Stream.runForEach((transition) =>
      transition.to === "Open"
        ? Effect.logWarning("Graph API circuit open: owner lookups wait").pipe(Effect.annotateLogs({
          circuit: transition.key,
          retry_in_seconds: Math.ceil(Duration.toMillis(transition.retryAfter) / 1000)
        }))
        : transition.to === "Closed"
        ? Effect.logInfo("Graph API circuit closed: Meta answers again").pipe(Effect.annotateLogs({ circuit: transition.key }))
        : Effect.void
    ),
    Effect.forkScoped
  )

  const pausedLocally = (): Option.Option<Paused> => {
    const left = pausedUntil - now()
    return left > 0 ? Option.some({ retryAfterMillis: left, reason: pauseReason }) : Option.none()
  }

  /** The shared pause and usage, folded into this instance's view; `undefined` when Redis did not answer. */
  const syncShared = readShared(pauseKey, usageKey).pipe(
    Effect.map(([left, reason, usage]) => {
      if (left > 0 && now() + left > pausedUntil) {
        pausedUntil = now() + left
        pauseReason = reason
      }
      const percent = Number(usage)
      if (usage !== "" && Number.isFinite(percent)) usagePercent = percent
      return true
    }),
    Effect.orElseSucceed(() => false)
  )

  // ---- the local token bucket: one line of waiters, each priced at the rate when it reaches the front,
  // so a usage report slows down the calls already waiting.
  const gate = Semaphore.makeUnsafe(1)
  const localSlot = gate.withPermit(Effect.gen(function*() {
    while (true) {
      const paused = pausedLocally()
      if (Option.isSome(paused)) return paused
      const waitMs = takeToken(own, now(), rateAt(link.share()), capacityAt(link.share()))
      if (waitMs === 0) return Option.none<Paused>()
      yield* Effect.sleep(Duration.millis(waitMs))
    }
  }))

  // ---- the shared bucket: effect's token bucket in Redis, `GRAPH_API_BURST` deep, refilled at the rate.
  // A call takes a token only when one is free (nothing is reserved ahead at today's rate), and waits
  // otherwise, reading the pause again each time, so a usage report or a pause holds at once.
  const sharedSlot = Effect.gen(function*() {
    while (true) {
      const limit = capacityAt(1)
      const wait = yield* sharedLimiter.consume({
        algorithm: "token-bucket",
        onExceeded: "fail",
        key: "calls",
        limit,
        window: Duration.millis((limit * 1000) / rateAt(1))
      }).pipe(
        Effect.as(undefined),
        Effect.catch((error) =>
          error.reason._tag === "RateLimitExceeded" ? Effect.succeed(error.reason.retryAfter) : Effect.fail(error)
        )
      )
      if (wait === undefined) {
        // A pause another instance saw meanwhile holds: the token is given up.
        if (!(yield* syncShared)) return yield* localSlot
        return pausedLocally()
      }
      // Jittered, so the waiters of all instances do not ask Redis in the same millisecond.
      const millis = Math.max(SHARED_SLOT_MIN_WAIT_MS, Duration.toMillis(wait))
      yield* Effect.sleep(Duration.millis(millis * (1 + Math.random() * 0.25)))
      const paused = pausedLocally()
      if (Option.isSome(paused)) return paused
    }
  })

  /** A slot for one call: `Some` when calls are paused (this instance's pause or a shared one). */
  const acquire: Effect.Effect<Option.Option<Paused>> = Effect.suspend(() => {
    const paused = pausedLocally()
    if (Option.isSome(paused)) return Effect.succeed(paused)
    if (!link.shared()) return localSlot
    return Effect.flatMap(syncShared, (answered) => {
      if (!answered) return localSlot
      const after = pausedLocally()
      if (Option.isSome(after)) return Effect.succeed(after)
      return sharedSlot.pipe(Effect.catch(() => localSlot))
    })
  })

  const pause = (millis: number, reason: string) =>
    Effect.gen(function*() {
      const until = now() + millis
      if (until <= pausedUntil) return
      pausedUntil = until
      pauseReason = reason
      yield* Effect.logWarning("Graph API throttled: pausing calls").pipe(
        Effect.annotateLogs({ reason, pause_seconds: Math.ceil(millis / 1000) })
      )
      if (link.shared()) yield* Effect.ignore(writePause(pauseKey, Math.ceil(millis), reason))
    })

  /** The pause after a throttling error without Meta's estimate: doubling while throttling repeats. */
  const throttleBackoff = (base: Duration.Duration) => () => {
    const millis = Math.min(Duration.toMillis(base) * 2 ** throttleStreak, Duration.toMillis(THROTTLE_PAUSE_MAX))
    throttleStreak++
    return millis
  }

  const reportUsage = (percent: number) =>
    Effect.suspend(() => {
      usagePercent = percent
      return link.shared()
        ? Effect.ignore(link.redis.send("SET", usageKey, String(percent), "PX", String(Duration.toMillis(SHARED_USAGE_TTL))))
        : Effect.void
    })

  /**
   * Runs one lookup behind both circuits (shared ones while Redis answers).
   * Fails with the circuit's error when a circuit is open or a probe is under way.
   */
  const guard = <A, E>(
    call: Effect.Effect<A, E>,
    classify: (exit: Exit.Exit<A, E | CircuitBreaker.CircuitBreakerError>) => Outcomes
  ) => {
    const through = (circuits: typeof local) =>
      circuits.token.execute(
        circuits.failures.execute(call, { key: FAILURES_CIRCUIT, classify: (exit) => classify(exit).failures }),
        { key: TOKEN_CIRCUIT, classify: (exit) => classify(exit).token }
      )
    if (!link.shared()) return through(local)
    // Redis went away between the check and the call: this lookup goes through the local circuits.
    return through(shared).pipe(
      Effect.catchIf(
        (error) => error instanceof CircuitBreaker.CircuitBreakerError && error.reason._tag === "CircuitBreakerStoreError",
        () => through(local)
      )
    )
  }

  const stateOf = (circuits: typeof local) =>
    Effect.all([circuits.failures.state(FAILURES_CIRCUIT), circuits.token.state(TOKEN_CIRCUIT)]).pipe(
      Effect.map((states): CircuitState =>
        states.some((s) => s._tag === "Open") ? "open" : states.some((s) => s._tag === "HalfOpen") ? "half_open" : "closed"
      )
    )
  const circuit: Effect.Effect<CircuitState> = Effect.suspend(() =>
    link.shared() ? stateOf(shared).pipe(Effect.catch(() => stateOf(local))) : stateOf(local)
  ).pipe(Effect.orElseSucceed((): CircuitState => "closed"))

  return {
    acquire,
    pause,
    throttleBackoff,
    /** Meta answered: the throttling streak is over. */
    answered: Effect.sync(() => {
      throttleStreak = 0
    }),
    reportUsage,
    guard,
    circuit,
    /** The pause now in force (shared ones included), for health. */
    paused: Effect.suspend(() => (link.shared() ? Effect.asVoid(syncShared) : Effect.void)).pipe(
      Effect.map(() => (pausedUntil > now() ? pausedUntil : null))
    ),
    usagePercent: () => usagePercent,
    rate
  }
})

export type GraphBudget = Effect.Success<ReturnType<typeof makeGraphBudget>>
