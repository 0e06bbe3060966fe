import { NodeRedis } from "@effect/platform-node"
import { Cause, Clock, Config, Context, Duration, Effect, Exit, Layer, Option, Redacted, References, Schedule, Scope } from "effect"
import { Redis } from "effect/persistence"
import { randomUUID } from "node:crypto"
import { AppConfig } from "./AppConfig.ts"

/** A Redis command answers within this, or the instance goes on with its local limits (a busy instance reads answers late). */
export const REDIS_COMMAND_TIMEOUT = Duration.seconds(1)
/** One connection attempt gives up after this. */
export const REDIS_CONNECT_TIMEOUT = Duration.seconds(2)
/** Longest gap between two connection attempts. */
export const REDIS_RECONNECT_MAX = Duration.seconds(1)
/** How often an instance tells the others it is alive, and checks that Redis answers. */
export const REDIS_HEARTBEAT_INTERVAL = Duration.seconds(1)
/** An instance not heard from for this long no longer counts towards the others' share. */
export const INSTANCE_TTL = Duration.seconds(5)
/** Commands node-redis may hold while they wait for their answers. */
export const REDIS_COMMAND_QUEUE_MAX = 1000
/** The default of `REDIS_KEY_PREFIX`: the start of every key this service writes. */
export const DEFAULT_KEY_PREFIX = "chatico-mapper:"

/** `off`: no REDIS_URL; `shared`: limits through Redis; `local`: Redis away, this instance's share until it answers. */
export type RedisMode = "off" | "shared" | "local"

/** The `redis` check of `/monitoring/health`: never failing (Redis is optional), `degraded` with a warning while away. */
export interface RedisHealth {
  readonly ok: true
  readonly warning?: string
  readonly detail: {
    readonly status: "ok" | "degraded" | "off"
    readonly mode: RedisMode
    readonly instances: number
    readonly share: number
    readonly since: string | null
  }
}

const redisError = (message: string) => new Redis.RedisError({ cause: new Error(message) })

/** What a Redis failure says, without the URL (it may carry a password). */
const describe = (error: Redis.RedisError) => {
  const cause = error.cause
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)
}

/** One round trip: this instance is alive; instances not seen within the TTL are dropped; how many are left. */
const heartbeatScript = Redis.script(
  (key: string, member: string, ttlMillis: number) => [key, member, ttlMillis],
  {
    numberOfKeys: 1,
    lua: `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call("ZADD", KEYS[1], now, ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - ttl)
redis.call("PEXPIRE", KEYS[1], ttl)
return redis.call("ZCARD", KEYS[1])
`
  }
).withReturnType<number>()

/** The optional Redis behind the shared limits; it connects in the background and a failure means local limits until it answers. */
export class RedisLink extends Context.Service<RedisLink, {
  readonly redis: Redis.Redis["Service"]
  /** The start of every key (`REDIS_KEY_PREFIX`), so deployments and tests sharing a Redis stay apart. */
  readonly prefix: string
  /** Whether limits go through Redis right now. */
  readonly shared: () => boolean
  /** The share of a total budget this instance takes while it is on its own limits. */
  readonly share: () => number
  readonly health: Effect.Effect<RedisHealth>
}>()("chatico/services/RedisLink") {
  static readonly layer = Layer.effect(
    RedisLink,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const prefix = yield* Config.String("REDIS_KEY_PREFIX").pipe(Config.withDefault(DEFAULT_KEY_PREFIX))
      const instanceId = randomUUID()
      const clock = yield* Clock.Clock
      let current: Redis.Redis["Service"] | undefined
      let mode: RedisMode = Option.isSome(config.redisUrl) ? "local" : "off"
      let instances = 1
      let since: number | null = null
      let lastError: string | null = null
      let warned = false
      let closing = false

      // Also while shared: a call whose Redis command failed falls back to this instance's own limits.
      const share = () => (mode === "off" ? 1 : 1 / instances)

      // Logged once per outage, not once per failed command.
      const lost = (why: string) =>
        Effect.suspend(() => {
          lastError = why
          if (closing || mode === "off" || (mode === "local" && warned)) return Effect.void
          mode = "local"
          since = clock.currentTimeMillisUnsafe()
          warned = true
          return Effect.logWarning("Redis unreachable: limits are this instance's own until it answers").pipe(
            Effect.annotateLogs({ reason: why, share_of_budget: Math.round(share() * 1000) / 1000, instances })
          )
        })

      const answered = (live: number) =>
        Effect.suspend(() => {
          instances = Math.max(1, live)
          if (mode !== "local") return Effect.void
          mode = "shared"
          since = clock.currentTimeMillisUnsafe()
          lastError = null
          warned = false
          return Effect.logInfo("Redis answers: the Graph API budget and client limits are shared").pipe(
            Effect.annotateLogs({ instances })
          )
        })

      const send = <A = unknown>(command: string, ...args: ReadonlyArray<string>): Effect.Effect<A, Redis.RedisError> =>
        Effect.suspend(() =>
          current === undefined ? Effect.fail(redisError("not connected")) : current.send<A>(command, ...args)
        ).pipe(
          Effect.timeoutOrElse({
            duration: REDIS_COMMAND_TIMEOUT,
            orElse: () =>
              Effect.fail(new Redis.RedisError({
                cause: new Cause.TimeoutError(`no answer within ${Duration.format(REDIS_COMMAND_TIMEOUT)}`)
              }))
          }),
          // NOSCRIPT (a restarted Redis forgot the scripts) is answered by loading them again, not an outage.
          Effect.tapError((error) => (describe(error).includes("NOSCRIPT") ? Effect.void : lost(describe(error))))
        )

      const redis = yield* Redis.make({
        send,
        // The stores used here need neither pub/sub nor reserved connections.
        subscribe: () => Effect.fail(redisError("subscriptions are not used")),
        connect: Effect.fail(redisError("reserved connections are not used"))
      })

      if (Option.isSome(config.redisUrl)) {
        const url = Redacted.value(config.redisUrl.value)
        const connectOnce = Effect.suspend(() => {
          // Until the first connection, node-redis must give up (and be retried here); after it, reconnect for ever.
          let connected = false
          const client = NodeRedis.layer({
            url,
            disableOfflineQueue: true,
            commandsQueueMaxLength: REDIS_COMMAND_QUEUE_MAX,
            socket: {
              connectTimeout: Duration.toMillis(REDIS_CONNECT_TIMEOUT),
              reconnectStrategy: (retries, cause) =>
                connected ? Math.min(50 * 2 ** retries, Duration.toMillis(REDIS_RECONNECT_MAX)) : cause
            }
          }).pipe(
            // NodeRedis warns on every socket error; this service logs an outage once instead.
            Layer.provide(Layer.succeed(References.MinimumLogLevel, "Error"))
          )
          return Effect.gen(function*() {
            const scope = yield* Scope.make()
            const built = yield* Effect.exit(Layer.buildWithScope(client, scope))
            if (Exit.isFailure(built)) {
              yield* Scope.close(scope, built)
              return yield* Effect.failCause(built.cause)
            }
            connected = true
            current = Context.get(built.value, Redis.Redis)
            // Leaving: the others' share grows at their next heartbeat instead of after the TTL.
            yield* Effect.addFinalizer(() =>
              Effect.suspend(() => {
                closing = true
                return Effect.ignore(send("ZREM", members, instanceId))
              }).pipe(Effect.andThen(Scope.close(scope, Exit.void)))
            )
            yield* heartbeat
          })
        })
        const members = `${prefix}instances`
        // Before the first connection there is nothing to ask (the connection attempts report the outage).
        const heartbeat = Effect.suspend(() => current === undefined ? Effect.void : beat)
        const beat = redis.eval(heartbeatScript)(members, instanceId, Duration.toMillis(INSTANCE_TTL)).pipe(
          Effect.flatMap(answered),
          Effect.ignore
        )
        yield* connectOnce.pipe(
          Effect.tapError((error) => lost(describe(error))),
          Effect.retry(Schedule.spaced(REDIS_RECONNECT_MAX)),
          Effect.forkScoped
        )

        yield* heartbeat.pipe(Effect.repeat(Schedule.spaced(REDIS_HEARTBEAT_INTERVAL)), Effect.forkScoped)
      }

      const health = Effect.sync((): RedisHealth => {
        const detail = {
          status: mode === "off" ? "off" as const : mode === "shared" ? "ok" as const : "degraded" as const,
          mode,
          instances,
          share: mode === "local" ? Math.round(share() * 1000) / 1000 : 1,
          since: since === null ? null : new Date(since).toISOString()
        }
        if (mode !== "local") return { ok: true, detail }
        return {
          ok: true,
          warning: `Redis unreachable (${lastError ?? "not connected yet"}): limits are local at ${detail.share} of the budget`,
          detail
        }
      })

      return RedisLink.of({ redis, prefix, shared: () => mode === "shared", share, health })
    })
  )
}
