import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { queueMessageCount } from "../support/Amqp.ts"
import {
  bucketExcess,
  countByStatus,
  eventuallyAsync,
  mediaIds,
  postMediaComments,
  redisHealth,
  sleep,
  startTrio,
  waitRedisMode,
  waitRouted
} from "../support/Instances.ts"

const ENTRY_PREFIX = "662"
const OWNER_ID = "6620000999"
const RATE = 5
const BURST = 5
const OUTAGE_MS = 10_000

const redisUp = () => {
  try {
    return execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "ping"], { encoding: "utf8" }).trim() === "PONG"
  } catch {
    return false
  }
}

/** The machine's own command for its Redis (as `.ci/run` starts it). */
const startRedis = async () => {
  if (redisUp()) return
  execFileSync("redis-server", [
    "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "", "--appendonly", "no",
    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"
  ])
  const deadline = Date.now() + 15_000
  while (!redisUp() && Date.now() < deadline) await sleep(100)
  if (!redisUp()) throw new Error("Redis did not come back")
}

describe("Redis under faults", () => {
  it.live("Redis stopped mid-run: every event routed, limits local meanwhile at a third each, shared again after", () =>
    Effect.gen(function*() {
      const prefix = `chatico-test-redis-faults-${randomUUID().slice(0, 8)}:`
      const { amqp, database, graph, queue, services } = yield* startTrio({
        label: "redis_faults",
        ownerId: OWNER_ID,
        redisPrefix: prefix,
        env: { GRAPH_API_CALLS_PER_SECOND: String(RATE), GRAPH_API_BURST: String(BURST) }
      })
      assert.isTrue(yield* Effect.promise(() => waitRedisMode(services, "shared", 10_000, 3)))

      const result = yield* Effect.promise(async () => {
        const media = services.map(() => mediaIds(60))
        const statuses = await Promise.all(services.map((service, i) => postMediaComments(service, ENTRY_PREFIX, media[i]!)))
        assert.deepStrictEqual(statuses, [200, 200, 200])
        await sleep(6000)
        try {
          execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"])
        } catch {
          // The connection drops as Redis exits.
        }
        const stopped = performance.now()
        assert.isTrue(await waitRedisMode(services, "local", 10_000), "the instances did not notice Redis was gone")
        const degraded = await Promise.all(services.map(redisHealth))
        // Webhooks go on while Redis is away, without waiting for it.
        const lateMedia = mediaIds(5)
        const started = performance.now()
        assert.strictEqual(await postMediaComments(services[1]!, ENTRY_PREFIX, lateMedia), 200)
        const webhookMs = performance.now() - started
        await sleep(OUTAGE_MS)
        const restarting = performance.now()
        await startRedis()
        const shared = await waitRedisMode(services, "shared", 15_000, 3)
        return { media: [...media.flat(), ...lateMedia], stopped, restarting, degraded, webhookMs, shared }
      }).pipe(Effect.ensuring(Effect.promise(startRedis)))

      for (const check of result.degraded) {
        assert.isTrue(check?.ok)
        assert.strictEqual(check?.detail.status, "degraded")
        assert.strictEqual(check?.detail.share, 0.333)
        assert.match(check?.warning ?? "", /Redis unreachable/)
      }
      assert.isBelow(result.webhookMs, 1000)
      assert.isTrue(result.shared, "the instances did not go back to the shared budget")

      // Every event routed, none lost.
      assert.isTrue(yield* Effect.promise(() => waitRouted(database, result.media.length, 120_000)))
      assert.strictEqual(yield* Effect.promise(() => countByStatus(database, "pending")), 0)
      assert.isTrue(yield* Effect.promise(() =>
        eventuallyAsync(async () => ((await queueMessageCount(amqp, queue)) ?? 0) >= result.media.length, 10_000)
      ))

      // While local, the three together kept to the budget: a third of the rate and burst each.
      const during = graph.calls.map((call) => call.at).filter((at) => at > result.stopped + 2000 && at < result.restarting)
        .sort((a, b) => a - b)
      const localBurst = 3 * Math.max(1, Math.floor(BURST / 3))
      const excess = bucketExcess(during, RATE, localBurst)
      yield* Effect.log(
        `redis outage: ${during.length} calls in ${((result.restarting - result.stopped - 2000) / 1000).toFixed(1)} s local, ` +
          `worst excess ${excess.toFixed(2)}, webhook during the outage ${Math.round(result.webhookMs)} ms`
      )
      assert.isAbove(during.length, 0)
      assert.isAtMost(excess, 2)
      // Each instance logged the outage once (a slow answer under load, "TimeoutError", is an outage of its own).
      for (const service of services) {
        const lines = service.output().split("\n").filter((line) => line.includes("Redis unreachable") && !line.includes("TimeoutError"))
        assert.strictEqual(lines.length, 1, lines.join("\n"))
      }
    }).pipe(Effect.scoped), 300_000)
})
