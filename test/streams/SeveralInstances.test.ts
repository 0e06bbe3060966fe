import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { randomUUID } from "node:crypto"
import { LATE_SLOT_TOLERANCE } from "../../src/services/GraphBudget.ts"
import { appUsage, businessUsage, type GraphStandIn, replies } from "../support/GraphStandIn.ts"
import {
  bucketExcess,
  busiestWindow,
  eventually,
  flood,
  mediaIds,
  postMediaComments,
  redisHealth,
  type ServiceProcess,
  startTrio,
  waitRedisMode,
  waitRouted,
  withLagProbe
} from "../support/Instances.ts"

const ENTRY_PREFIX = "661"
const OWNER_ID = "6610000999"
const RATE = 5
const BURST = 5
/** Requests per second one client may make to /webhook in these tests (bursts of twice that). */
const CLIENT_RATE = 20
/** Calls already on the wire when one instance is told to back off may still arrive this long after. */
const IN_FLIGHT_GRACE_MS = 100

const trio = (label: string, redisPrefix: string | undefined) =>
  startTrio({
    label,
    ownerId: OWNER_ID,
    redisPrefix,
    env: {
      GRAPH_API_CALLS_PER_SECOND: String(RATE),
      GRAPH_API_BURST: String(BURST),
      RATE_LIMIT_WEBHOOK: String(CLIENT_RATE)
    }
  })

/** Posts `perInstance` comments (distinct media) to each instance at once; returns the media. */
const postAcross = (services: ReadonlyArray<ServiceProcess>, perInstance: number) =>
  Effect.promise(async () => {
    const media = services.map(() => mediaIds(perInstance))
    const statuses = await Promise.all(services.map((service, i) => postMediaComments(service, ENTRY_PREFIX, media[i]!)))
    assert.deepStrictEqual(statuses, services.map(() => 200))
    return media.flat()
  })

const arrivals = (graph: GraphStandIn["Service"], media: ReadonlyArray<string>) => {
  const wanted = new Set(media)
  return graph.calls.filter((call) => wanted.has(call.mediaId)).map((call) => call.at).sort((a, b) => a - b)
}

/** Calls per second by instance (for a failure message). */
const perSecond = (graph: GraphStandIn["Service"], media: ReadonlyArray<string>) => {
  const wanted = new Set(media)
  const calls = graph.calls.filter((call) => wanted.has(call.mediaId))
  const start = calls[0]?.at ?? 0
  const seconds = new Map<number, Array<string>>()
  for (const call of calls) {
    const second = Math.floor((call.at - start) / 1000)
    seconds.set(second, [...(seconds.get(second) ?? []), call.path.slice(5, 6)])
  }
  return [...seconds].map(([second, paths]) => `${second}s:${paths.join("")}`).join(" ")
}

const redisLines = (services: ReadonlyArray<ServiceProcess>) =>
  services.map((service) => service.output().split("\n").filter((line) => /Redis|circuit|throttled/.test(line)).join("\n")).join("\n")

describe("Several instances", () => {
  it.live("with REDIS_URL: one per-client limit, one Graph API budget and one throttle pause for all three", () =>
    Effect.gen(function*() {
      const prefix = `chatico-test-instances-${randomUUID().slice(0, 8)}:`
      const { database, graph, services } = yield* trio("instances_shared", prefix)
      assert.isTrue(yield* Effect.promise(() => waitRedisMode(services, "shared", 10_000, 3)))

      // A flooding client over two instances gets its limit once: 2 s of burst plus the rate.
      const flooded = yield* Effect.promise(() => flood(services.slice(0, 2), 300))
      const ceiling = CLIENT_RATE * 2 + CLIENT_RATE * flooded.seconds + 2
      assert.isAtMost(flooded.allowed, ceiling, `allowed ${flooded.allowed} in ${flooded.seconds} s; ${redisLines(services)}`)
      assert.isAtLeast(flooded.allowed, CLIENT_RATE * 2 - 2)
      yield* Effect.log(`shared flood: ${flooded.allowed} of 300 allowed in ${flooded.seconds} s (ceiling ${ceiling.toFixed(1)})`)
      yield* Effect.sleep("2500 millis")

      // 300 events over 300 media, 100 to each instance: Meta sees the budget once, in total.
      const media = yield* postAcross(services, 100)
      const routed = yield* Effect.promise(() => withLagProbe(() => waitRouted(database, 300, 150_000)))
      assert.isTrue(routed.value)
      const times = arrivals(graph, media)
      assert.strictEqual(new Set(graph.calls.filter((c) => media.includes(c.mediaId)).map((c) => c.mediaId)).size, 300)
      for (const version of ["/v25.0/", "/v25.1/", "/v25.2/"]) {
        assert.isAbove(graph.calls.filter((call) => call.path.startsWith(version)).length, 0, `no call from ${version}`)
      }
      const excess = bucketExcess(times, RATE, BURST)
      const seconds = (times[times.length - 1]! - times[0]!) / 1000
      // One call of slack, plus the calls two bounded delays may bunch up: the stand-in's own stalls
      // (it shares this process) and a slot taken up to LATE_SLOT_TOLERANCE late.
      const slack = 1 + (RATE * (routed.worstLagMs + Duration.toMillis(LATE_SLOT_TOLERANCE))) / 1000
      yield* Effect.log(`shared budget: ${times.length} calls in ${seconds.toFixed(1)} s, worst excess ${excess.toFixed(2)} (slack ${slack.toFixed(2)}), stand-in stalled ${routed.worstLagMs} ms at most`)
      assert.isAtMost(excess, slack, `slack ${slack.toFixed(2)}: the calls went over ${RATE}/s plus a burst of ${BURST}: ${perSecond(graph, media)}; ${redisLines(services)}`)

      // One instance is told to back off (80002, regain in 0.1 min = 6 s): none calls before that ends.
      // Meta's answers carry its usage report; the throttling one says 100 % (and when to come back).
      graph.setCommonHeaders(appUsage(10))
      const [throttled] = mediaIds(1)
      graph.script(throttled!, replies.error(80002, { status: 400, headers: businessUsage(100, 0.1) }), replies.owner(OWNER_ID))
      yield* Effect.promise(() => postMediaComments(services[0]!, ENTRY_PREFIX, [throttled!]))
      const more = yield* postAcross(services, 10)
      assert.isTrue(yield* Effect.promise(() => eventually(() => graph.callsFor(throttled!).length > 0, 10_000, 20)))
      const t0 = graph.callsFor(throttled!)[0]!.at
      assert.isTrue(yield* Effect.promise(() => waitRouted(database, 300 + 1 + more.length, 90_000)))
      const during = graph.calls.filter((call) => call.at > t0 + IN_FLIGHT_GRACE_MS && call.at < t0 + 6000)
      assert.deepStrictEqual(during.map((call) => `${call.path} at +${Math.round(call.at - t0)} ms`), [])
      const after = graph.calls.filter((call) => call.at >= t0 + 6000)
      assert.isAbove(after.length, 0)
      yield* Effect.log(`shared pause: first call after the throttle at +${Math.round(after[0]!.at - t0)} ms`)
    }).pipe(Effect.scoped), 240_000)

  it.live("without REDIS_URL: each instance keeps its own budget and client limit, so Meta sees three times the rate", () =>
    Effect.gen(function*() {
      const { database, graph, services } = yield* trio("instances_local", undefined)
      assert.strictEqual((yield* Effect.promise(() => redisHealth(services[0]!)))?.detail.mode, "off")

      const flooded = yield* Effect.promise(() => flood(services.slice(0, 2), 300))
      yield* Effect.log(`unshared flood: ${flooded.allowed} of 300 allowed in ${flooded.seconds} s`)
      // Each instance lets its own burst through: about twice the shared ceiling.
      assert.isAbove(flooded.allowed, CLIENT_RATE * 2 * 2 - 4)
      yield* Effect.sleep("2500 millis")

      const media = yield* postAcross(services, 50)
      assert.isTrue(yield* Effect.promise(() => waitRouted(database, 150, 90_000)))
      const times = arrivals(graph, media)
      const busiest = busiestWindow(times, 2000)
      yield* Effect.log(`unshared budget: busiest 2 s had ${busiest} calls (one shared budget allows ${BURST + RATE * 2})`)
      assert.isAbove(busiest, 2 * (BURST + RATE * 2))
      assert.isAbove(bucketExcess(times, RATE, BURST), 10)
    }).pipe(Effect.scoped), 180_000)
})
