import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { randomUUID } from "node:crypto"
import { appUsage, businessUsage, type GraphStandIn, replies } from "../support/GraphStandIn.ts"
import {
  bucketExcess,
  busiestWindow,
  eventually,
  flood,
  graphHealthReport,
  mediaIds,
  postMediaComments,
  redisHealth,
  sleep,
  type ServiceProcess,
  startTrio,
  unroutedReport,
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
/** A call granted a token may leave its instance this much later (that instance's event loop stalled). */
const GRANTED_CALL_DELAY_MS = 250
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
  services.map((service) => service.output().split("\n").filter((line) => /Redis|circuit|throttled|recovering|WARN|ERROR/.test(line)).join("\n")).join("\n")

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
      assert.isTrue(routed.value, `${unroutedReport(database)}\n${redisLines(services)}`)
      const times = arrivals(graph, media)
      assert.strictEqual(new Set(graph.calls.filter((c) => media.includes(c.mediaId)).map((c) => c.mediaId)).size, 300)
      for (const version of ["/v25.0/", "/v25.1/", "/v25.2/"]) {
        assert.isAbove(graph.calls.filter((call) => call.path.startsWith(version)).length, 0, `no call from ${version}`)
      }
      const excess = bucketExcess(times, RATE, BURST)
      const seconds = (times[times.length - 1]! - times[0]!) / 1000
      // One call of slack, plus the calls two bounded delays may bunch up: the stand-in's own stalls
      // (it shares this process) and a call leaving its instance up to GRANTED_CALL_DELAY_MS after its token.
      const slack = 1 + (RATE * (routed.worstLagMs + GRANTED_CALL_DELAY_MS)) / 1000
      yield* Effect.log(`shared budget: ${times.length} calls in ${seconds.toFixed(1)} s, worst excess ${excess.toFixed(2)} (slack ${slack.toFixed(2)}), stand-in stalled ${routed.worstLagMs} ms at most`)
      assert.isAtMost(excess, slack, `slack ${slack.toFixed(2)}: the calls went over ${RATE}/s plus a burst of ${BURST}: ${perSecond(graph, media)}; ${redisLines(services)}`)

      // One instance is told to back off (80002, regain in 0.1 min = 6 s): none calls before that ends.
      // Meta's answers carry its usage report; the throttling one says 100 % (and when to come back).
      graph.setCommonHeaders(appUsage(10))
      const [throttled] = mediaIds(1)
      graph.script(throttled!, replies.error(80002, { status: 400, headers: businessUsage(100, 0.1) }), replies.owner(OWNER_ID))
      // The stand-in stamps a call when its event loop gets to it: a stall of this process during the
      // pause makes calls sent before it look later, so the grace grows by the worst stall seen then.
      const pausePhase = yield* Effect.promise(() =>
        withLagProbe(async () => {
          await postMediaComments(services[0]!, ENTRY_PREFIX, [throttled!])
          const more = await Effect.runPromise(postAcross(services, 10))
          const called = await eventually(() => graph.callsFor(throttled!).length > 0, 10_000, 20)
          if (called) await sleep(graph.callsFor(throttled!)[0]!.at + 6000 - performance.now())
          return { more, called }
        })
      )
      const { more, called: throttledCalled } = pausePhase.value
      assert.isTrue(throttledCalled, `${throttled} never asked; last calls ${graph.calls.slice(-5).map((c) => `${c.path} at ${c.at}`).join(", ")} (now ${performance.now()})\n${unroutedReport(database)}\n${redisLines(services)}`)
      const t0 = graph.callsFor(throttled!)[0]!.at
      const allRouted = yield* Effect.promise(() => waitRouted(database, 300 + 1 + more.length, 90_000))
      if (!allRouted) {
        const since = graph.calls.filter((call) => call.at >= t0).map((call) => `${call.path.slice(5, 6)}:${call.mediaId.slice(-5)}@+${Math.round(call.at - t0)}`)
        const health = yield* Effect.promise(() => graphHealthReport(services))
        assert.fail(`${unroutedReport(database)}\ncalls since the throttle: ${since.join(" ")}\n${health}\n${redisLines(services)}`)
      }
      // And calls granted before the throttled instance had read Meta's answer were in flight: it logs
      // the pause the moment it knows (stand-in stamps are this process's performance.now()).
      const pauseLine = services[0]!.output().split("\n").filter((line) => line.includes("Graph API throttled: pausing calls")).at(-1)
      assert.isDefined(pauseLine, redisLines(services))
      const learnedMs = Math.max(0, Math.round(Date.parse(JSON.parse(pauseLine!).timestamp) - (performance.timeOrigin + t0)))
      const grace = IN_FLIGHT_GRACE_MS + pausePhase.worstLagMs + learnedMs
      const during = graph.calls.filter((call) => call.at > t0 + grace && call.at < t0 + 6000)
      assert.deepStrictEqual(during.map((call) => `${call.path} at +${Math.round(call.at - t0)} ms (grace ${grace} ms: ${pausePhase.worstLagMs} ms stall, pause known after ${learnedMs} ms)`), [])
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
