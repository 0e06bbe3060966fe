import { NodeHttpClient } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Fiber, Layer, Logger, Option, Redacted, References, Tracer } from "effect"
import { Headers, HttpClient } from "effect/http"
import { TestClock } from "effect/testing"
import { createHmac } from "node:crypto"
import { AppConfig, type AppConfigShape } from "../../src/services/AppConfig.ts"
import { Database } from "../../src/services/Database.ts"
import {
  classify,
  GRAPH_FAILURE_LOG_INTERVAL_MS,
  GraphApi,
  type GraphApiError,
  rateShare,
  readUsage,
  THROTTLE_PAUSE_MAX,
  TRANSIENT_RETRIES
} from "../../src/services/GraphApi.ts"
import { MAX_PENDING_LOOKUPS, MediaOwners } from "../../src/services/MediaOwners.ts"
import { RedisLink } from "../../src/services/Redis.ts"
import { appUsage, businessUsage, GRAPH_TOKEN, GraphStandIn, replies } from "../support/GraphStandIn.ts"
import { APP_SECRET, testConfig } from "../support/TestApp.ts"
import { TestDatabase } from "../support/TestDatabase.ts"
import { uniqueId } from "../support/Webhooks.ts"

const PROOF = createHmac("sha256", APP_SECRET).update(GRAPH_TOKEN).digest("hex")

const configFor = (standIn: GraphStandIn["Service"], overrides: Partial<AppConfigShape> = {}) =>
  testConfig("postgres://postgres@127.0.0.1:5432/unused", {
    ownerResolution: "graph",
    instagramAccessToken: Option.some(Redacted.make(GRAPH_TOKEN)),
    graphApiUrl: standIn.url,
    graphTimeout: Duration.seconds(1),
    graphCallsPerSecond: 1000,
    graphBurst: 1000,
    graphThrottlePause: Duration.millis(300),
    ...overrides
  })

/** A fresh GraphApi (its own limiter and circuit) against the stand-in, closed with the test. */
const makeGraphApi = (overrides: Partial<AppConfigShape> = {}) =>
  Effect.gen(function*() {
    const standIn = yield* GraphStandIn
    const context = yield* Layer.build(
      GraphApi.layer.pipe(Layer.provide(AppConfig.layerWith(configFor(standIn, overrides))))
    )
    return Context.get(context, GraphApi)
  })

/** A fresh MediaOwners (empty memory) on this file's database. */
const makeMediaOwners = (overrides: Partial<AppConfigShape> = {}) =>
  Effect.gen(function*() {
    const standIn = yield* GraphStandIn
    const db = yield* TestDatabase
    const config = AppConfig.layerWith(configFor(standIn, { databaseUrl: Redacted.make(db.url), ...overrides }))
    const context = yield* Layer.build(
      MediaOwners.layer.pipe(Layer.provideMerge(Database.layer), Layer.provide(config))
    )
    yield* Context.get(context, Database).awaitReady
    return { owners: Context.get(context, MediaOwners), graph: Context.get(context, GraphApi) }
  })

const failure = (effect: Effect.Effect<unknown, GraphApiError>) => Effect.flip(effect)

/**
 * Runs a test on a test clock of its own (at 0): the pauses, the token bucket and the circuits
 * follow it, while Meta's answers still come from the stand-in over loopback. The clock stands
 * still while a call is in flight, so no call times out unless the test moves the clock meanwhile.
 */
const onTestClock = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, TestClock.layer())

/** A GraphApi like `makeGraphApi`'s that also notes the test clock's time of every call it sends. */
const makeClockedGraphApi = (overrides: Partial<AppConfigShape> = {}) =>
  Effect.gen(function*() {
    const standIn = yield* GraphStandIn
    const sent: Array<{ readonly mediaId: string; readonly at: number }> = []
    const stamping = Layer.effect(
      HttpClient.HttpClient,
      Effect.map(
        HttpClient.HttpClient,
        HttpClient.tapRequest((request) =>
          Effect.map(Clock.currentTimeMillis, (at) => {
            sent.push({ mediaId: request.url.slice(request.url.lastIndexOf("/") + 1), at })
          })
        )
      )
    ).pipe(Layer.provide(NodeHttpClient.layerUndici))
    const context = yield* Layer.build(
      GraphApi.layerNoDeps.pipe(
        Layer.provide(Layer.merge(stamping, RedisLink.layer)),
        Layer.provide(AppConfig.layerWith(configFor(standIn, overrides)))
      )
    )
    const sentAt = (media: ReadonlyArray<string>) => sent.filter((call) => media.includes(call.mediaId)).map((call) => call.at)
    return { graph: Context.get(context, GraphApi), sentAt }
  })

/** Waits for `effect` while moving the test clock on, for lookups whose retries sleep between answers over loopback. */
const whileTheClockRuns = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect, { startImmediately: true })
    while (fiber.pollUnsafe() === undefined) {
      yield* TestClock.adjust("50 millis")
      yield* TestClock.withLive(Effect.sleep("1 millis"))
    }
    return yield* Fiber.join(fiber)
  })

/** The time-to-wait of a `RateLimited` or `CircuitOpen` failure. */
const retryAfterOf = (error: GraphApiError) =>
  error.reason._tag === "RateLimited" || error.reason._tag === "CircuitOpen" ? error.reason.retryAfterMillis : undefined

const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((t, i) => t - times[i]!)

/** Captures every log line (JSON, annotations and causes included) at debug level. */
const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.map(Logger.formatJson, (line) => {
    lines.push(line)
  })
  const layer = Layer.mergeAll(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, "Debug"))
  return { lines, layer }
}

/** Records every span with its attributes. */
const recordSpans = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer }
}

layer(Layer.mergeAll(GraphStandIn.layer, TestDatabase.layer("graph_api")), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("GraphApi", (it) => {
  it.effect("classifies Meta's error codes and statuses", () =>
    Effect.sync(() => {
      for (const code of [4, 17, 32, 613, 80000, 80002, 80014]) assert.strictEqual(classify(400, { code }), "RateLimited", `${code}`)
      assert.strictEqual(classify(429, undefined), "RateLimited")
      assert.strictEqual(classify(400, { code: 190, error_subcode: 463 }), "TokenInvalid")
      for (const code of [1, 2]) assert.strictEqual(classify(500, { code }), "Transient", `${code}`)
      assert.strictEqual(classify(400, { code: 9999, is_transient: true }), "Transient")
      for (const status of [500, 502, 503, 504]) assert.strictEqual(classify(status, undefined), "Transient", `${status}`)
      for (const code of [10, 100, 200, 250, 299]) assert.strictEqual(classify(400, { code }), "Permanent", `${code}`)
      assert.strictEqual(classify(400, { code: 80015 }), "Permanent")
      assert.strictEqual(classify(404, undefined), "Permanent")
    }))

  it.effect("reads the usage headers: the highest percentage and Meta's regain estimate", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(readUsage(Headers.fromInput(appUsage(90))), { percent: 90, regainMinutes: 0 })
      assert.deepStrictEqual(readUsage(Headers.fromInput(businessUsage(80, 7))), { percent: 80, regainMinutes: 7 })
      assert.deepStrictEqual(readUsage(Headers.fromInput({ ...appUsage(20), ...businessUsage(95, 0) })), {
        percent: 95,
        regainMinutes: 0
      })
      assert.deepStrictEqual(readUsage(Headers.fromInput({ "x-app-usage": "not json" })), { percent: null, regainMinutes: 0 })
      assert.strictEqual(rateShare(null), 1)
      assert.strictEqual(rateShare(75), 1)
      assert.closeTo(rateShare(90), 0.4, 1e-9)
      assert.isAbove(rateShare(100), 0)
    }))

  it.effect("resolves an owner, sending fields, the token and a correct appsecret_proof on every call, and no trace headers", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi()
      const media = Array.from({ length: 5 }, () => uniqueId())
      for (const [i, id] of media.entries()) standIn.script(id, replies.owner(`1784140000000${i}`, `account${i}`))
      const owners = yield* Effect.forEach(media, (id) => graph.mediaOwner(id), { concurrency: "unbounded" })
      assert.deepStrictEqual(owners.map((o) => o.ownerId), media.map((_, i) => `1784140000000${i}`))
      assert.deepStrictEqual(owners.map((o) => o.username), media.map((_, i) => `account${i}`))
      const calls = media.flatMap((id) => standIn.callsFor(id))
      assert.strictEqual(calls.length, media.length)
      for (const call of calls) {
        assert.strictEqual(call.path, `/v25.0/${call.mediaId}`)
        assert.strictEqual(call.params.fields, "owner,username")
        assert.strictEqual(call.params.access_token, GRAPH_TOKEN)
        assert.strictEqual(call.params.appsecret_proof, PROOF)
        assert.match(call.params.appsecret_proof ?? "", /^[0-9a-f]{64}$/)
        assert.isUndefined(call.headers.traceparent)
        assert.isUndefined(call.headers.b3)
      }
      const health = yield* graph.health
      assert.isTrue(health.ok)
      assert.strictEqual(health.detail.token, "valid")
    }))

  it.effect("a media without owner in the answer is NoOwner, with the username", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi()
      const id = uniqueId()
      standIn.script(id, replies.usernameOnly("not_ours"))
      const error = yield* failure(graph.mediaOwner(id))
      assert.strictEqual(error.reason._tag, "NoOwner")
      if (error.reason._tag === "NoOwner") assert.strictEqual(error.reason.username, "not_ours")
      assert.strictEqual(standIn.callsFor(id).length, 1)
    }))

  it.effect("each failure kind: permanent and token errors are not retried, transient ones are", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const cases = [
        { reply: replies.error(100), tag: "Permanent", calls: 1 },
        { reply: replies.error(10, { status: 403 }), tag: "Permanent", calls: 1 },
        { reply: replies.error(200, { status: 403 }), tag: "Permanent", calls: 1 },
        { reply: replies.error(190, { subcode: 463 }), tag: "TokenInvalid", calls: 1 },
        { reply: replies.error(4), tag: "RateLimited", calls: 1 },
        { reply: replies.error(80002), tag: "RateLimited", calls: 1 },
        { reply: { status: 429, rawBody: "slow down" }, tag: "RateLimited", calls: 1 },
        { reply: replies.error(2), tag: "Transient", calls: 1 + TRANSIENT_RETRIES },
        { reply: replies.serverError(), tag: "Transient", calls: 1 + TRANSIENT_RETRIES },
        { reply: { status: 200, rawBody: "<html>" }, tag: "Transient", calls: 1 + TRANSIENT_RETRIES }
      ] as const
      yield* Effect.forEach(cases, (c) =>
        Effect.gen(function*() {
          // A graph of its own per case: a throttle or an open circuit must not leak into the next.
          const graph = yield* makeGraphApi()
          const id = uniqueId()
          standIn.script(id, c.reply)
          const error = yield* failure(graph.mediaOwner(id))
          assert.strictEqual(error.reason._tag, c.tag, JSON.stringify(c.reply))
          assert.strictEqual(standIn.callsFor(id).length, c.calls, JSON.stringify(c.reply))
        }), { concurrency: "unbounded" })
    }))

  it.effect("failed lookups are logged once per kind of failure per interval, not once each", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const logs = captureLogs()
      const graph = yield* makeGraphApi({ graphCircuitThreshold: 100 }).pipe(Effect.provide(logs.layer))
      const answers = [...Array.from({ length: 4 }, () => replies.error(100)), ...Array.from({ length: 4 }, () => replies.serverError())]
      const tags = yield* Effect.forEach(answers, (reply) => {
        const id = uniqueId()
        standIn.script(id, reply, reply, reply, reply)
        return Effect.map(failure(graph.mediaOwner(id)), (error) => error.reason._tag)
      }, { concurrency: "unbounded" }).pipe(Effect.provide(logs.layer))
      assert.deepStrictEqual([...new Set(tags)].sort(), ["Permanent", "Transient"])
      const failed = logs.lines.filter((line) => line.includes("Graph API call failed"))
      assert.strictEqual(failed.length, 2, failed.join("\n"))
      assert.isTrue(failed.some((line) => line.includes("\"reason\":\"Permanent\"") && line.includes("code 100")), failed.join("\n"))
      assert.isTrue(failed.some((line) => line.includes("\"reason\":\"Transient\"") && line.includes("HTTP 500")), failed.join("\n"))
    }))

  it.effect("a kind of failure is logged again once the interval is over, with how many were left out", () =>
    onTestClock(Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const logs = captureLogs()
      const run = Effect.gen(function*() {
        const graph = yield* makeGraphApi()
        const fail = Effect.suspend(() => {
          const id = uniqueId()
          standIn.script(id, replies.error(100))
          return failure(graph.mediaOwner(id))
        })
        const logged = () => logs.lines.filter((line) => line.includes("Graph API call failed"))
        for (let i = 0; i < 3; i++) yield* fail
        assert.strictEqual(logged().length, 1)
        yield* TestClock.adjust(GRAPH_FAILURE_LOG_INTERVAL_MS - 1)
        yield* fail
        assert.strictEqual(logged().length, 1)
        yield* TestClock.adjust(1)
        yield* fail
        assert.strictEqual(logged().length, 2, logged().join("\n"))
        assert.include(logged()[1], "\"failures_not_logged\":3")
      })
      yield* run.pipe(Effect.provide(logs.layer))
    })))

  it.effect("transient failures are retried with growing, jittered gaps until one succeeds", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi()
      const id = uniqueId()
      standIn.script(id, replies.serverError(), replies.error(1), replies.serverError(), replies.owner("17841411111111111"))
      const owner = yield* graph.mediaOwner(id)
      assert.strictEqual(owner.ownerId, "17841411111111111")
      const [g1, g2, g3] = gaps(standIn.callsFor(id).map((c) => c.at))
      assert.strictEqual(standIn.callsFor(id).length, 4)
      // 250 ms, 500 ms, 1 s, each ±20 %: every gap longer than the one before.
      assert.isAbove(g1!, 150)
      assert.isAbove(g2!, g1!)
      assert.isAbove(g3!, g2!)
    }))

  it.effect("a call that hangs times out and is retried", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi({ graphTimeout: Duration.millis(200) })
      const id = uniqueId()
      standIn.script(id, replies.hang(), replies.hang(), replies.owner("17841422222222222"))
      const owner = yield* graph.mediaOwner(id)
      assert.strictEqual(owner.ownerId, "17841422222222222")
      const calls = standIn.callsFor(id)
      assert.strictEqual(calls.length, 3)
      // Each retry waits for the timeout, then the backoff.
      for (const gap of gaps(calls.map((c) => c.at))) assert.isAbove(gap, 200)

      const stuck = uniqueId()
      standIn.script(stuck, replies.hang())
      const error = yield* failure(graph.mediaOwner(stuck))
      assert.strictEqual(error.reason._tag, "Transient")
      assert.include(error.message, "no answer within")
      assert.strictEqual(standIn.callsFor(stuck).length, 1 + TRANSIENT_RETRIES)
    }))

  it.effect("a throttling error pauses every call for exactly the backoff, then calls resume", () =>
    onTestClock(Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { graph, sentAt } = yield* makeClockedGraphApi({ graphThrottlePause: Duration.millis(400) })
      const throttled = uniqueId()
      const other = uniqueId()
      standIn.script(throttled, replies.error(4), replies.owner("17841433333333333"))
      standIn.script(other, replies.owner("17841444444444444"))
      const start = yield* Clock.currentTimeMillis
      const error = yield* failure(graph.mediaOwner(throttled))
      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.strictEqual(retryAfterOf(error), 400)
      assert.strictEqual((yield* graph.health).detail.paused_until, new Date(start + 400).toISOString())
      // While paused, nothing reaches Meta: not even 1 ms before the end.
      yield* TestClock.adjust(399)
      const paused = yield* failure(graph.mediaOwner(other))
      assert.strictEqual(paused.reason._tag, "RateLimited")
      assert.strictEqual(retryAfterOf(paused), 1)
      assert.strictEqual(standIn.callsFor(other).length, 0)
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* graph.mediaOwner(throttled)).ownerId, "17841433333333333")
      assert.strictEqual((yield* graph.mediaOwner(other)).ownerId, "17841444444444444")
      assert.isNull((yield* graph.health).detail.paused_until)
      assert.deepStrictEqual(gaps(sentAt([throttled])), [400])
    })))

  it.effect("repeated throttling doubles the pause up to THROTTLE_PAUSE_MAX; an answer starts again at the base", () =>
    onTestClock(Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi({ graphThrottlePause: Duration.minutes(5) })
      const id = uniqueId()
      standIn.script(id, ...Array.from({ length: 4 }, () => replies.error(4)), replies.owner("17841433333333334"))
      const pauses: Array<number | undefined> = []
      for (let i = 0; i < 4; i++) {
        const error = yield* failure(graph.mediaOwner(id))
        pauses.push(retryAfterOf(error))
        yield* TestClock.adjust(retryAfterOf(error) ?? 0)
      }
      assert.deepStrictEqual(pauses, [5, 10, 15, 15].map((minutes) => minutes * 60_000))
      assert.strictEqual(Duration.toMillis(THROTTLE_PAUSE_MAX), 15 * 60_000)
      assert.strictEqual((yield* graph.mediaOwner(id)).ownerId, "17841433333333334")
      const again = uniqueId()
      standIn.script(again, replies.error(4))
      assert.strictEqual(retryAfterOf(yield* failure(graph.mediaOwner(again))), 5 * 60_000)
    })))

  it.effect("Meta's estimated_time_to_regain_access sets the pause", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi()
      const id = uniqueId()
      standIn.script(id, replies.error(80002, { headers: businessUsage(100, 3) }))
      const error = yield* failure(graph.mediaOwner(id))
      assert.strictEqual(error.reason._tag, "RateLimited")
      if (error.reason._tag === "RateLimited") assert.strictEqual(error.reason.retryAfterMillis, 3 * 60_000)
      const pausedUntil = (yield* graph.health).detail.paused_until
      assert.isNotNull(pausedUntil)
      assert.isAbove(Date.parse(pausedUntil ?? "") - Date.now(), 2 * 60_000)

      // HTTP 429 with Retry-After (seconds) sets it the same way.
      const limited = yield* makeGraphApi()
      const other = uniqueId()
      standIn.script(other, { status: 429, rawBody: "", headers: { "retry-after": "7" } })
      const tooMany = yield* failure(limited.mediaOwner(other))
      assert.strictEqual(tooMany.reason._tag, "RateLimited")
      if (tooMany.reason._tag === "RateLimited") assert.strictEqual(tooMany.reason.retryAfterMillis, 7000)
    }))

  it.effect("usage above 75 % slows the calls down, those already waiting too (90 %: 40 % of the rate)", () =>
    onTestClock(Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { graph, sentAt } = yield* makeClockedGraphApi({ graphCallsPerSecond: 20, graphBurst: 1, graphTimeout: Duration.hours(1) })
      // Ten lookups wait in line for the bucket; the first call's answer carries the usage report
      // before the clock moves, so the other nine are priced at the rate it sets.
      const batch = (usage: number) =>
        Effect.gen(function*() {
          const media = Array.from({ length: 10 }, () => uniqueId())
          for (const id of media) standIn.script(id, { ...replies.owner("17841455555555555"), headers: appUsage(usage) })
          const fibers = yield* Effect.forEach(media, (id) => Effect.forkChild(graph.mediaOwner(id), { startImmediately: true }))
          yield* Fiber.join(fibers[0]!)
          yield* TestClock.adjust("10 seconds")
          yield* Fiber.joinAll(fibers)
          return gaps(sentAt(media).sort((a, b) => a - b))
        })
      // 20 calls/s is 50 ms apart; at 90 % usage 8 calls/s is 125 ms apart.
      assert.deepStrictEqual(yield* batch(10), Array.from({ length: 9 }, () => 50))
      assert.deepStrictEqual(yield* batch(90), Array.from({ length: 9 }, () => 125))
      const health = yield* graph.health
      assert.strictEqual(health.detail.usage_percent, 90)
      assert.strictEqual(health.detail.calls_per_second, 8)
    })))

  it.effect("repeated failures open the circuit: no call until the cooldown is over, then one probe closes it", () =>
    onTestClock(Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi({
        graphCircuitThreshold: 2,
        graphCircuitCooldown: Duration.millis(300),
        graphTimeout: Duration.hours(1)
      })
      const down = [uniqueId(), uniqueId()]
      for (const id of down) standIn.script(id, replies.serverError())
      // Their retries sleep: the clock moves on until they have failed.
      for (const id of down) assert.strictEqual((yield* whileTheClockRuns(failure(graph.mediaOwner(id)))).reason._tag, "Transient")
      assert.strictEqual((yield* graph.health).detail.circuit, "open")
      const blocked = uniqueId()
      standIn.script(blocked, replies.owner("17841466666666666"))
      const open = yield* failure(graph.mediaOwner(blocked))
      assert.strictEqual(open.reason._tag, "CircuitOpen")
      // The clock may have moved on a step after the circuit opened, never a whole cooldown.
      const left = retryAfterOf(open) ?? 0
      assert.isAbove(left, 0)
      assert.isAtMost(left, 300)
      // An outage is not a configuration fault: health stays ok while the circuit is open.
      assert.isTrue((yield* graph.health).ok)
      yield* TestClock.adjust(left - 1)
      const still = yield* failure(graph.mediaOwner(blocked))
      assert.strictEqual(still.reason._tag, "CircuitOpen")
      assert.strictEqual(retryAfterOf(still), 1)
      assert.strictEqual(standIn.callsFor(blocked).length, 0)
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* graph.mediaOwner(blocked)).ownerId, "17841466666666666")
      assert.strictEqual((yield* graph.health).detail.circuit, "closed")
      assert.strictEqual(standIn.callsFor(blocked).length, 1)
    })))

  it.effect("code 190: health fails with a clear error, lookups wait the cooldown (twice as long after a failed probe); an answer restores it", () =>
    onTestClock(Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const graph = yield* makeGraphApi({ graphCircuitCooldown: Duration.millis(300) })
      const id = uniqueId()
      const rejected = replies.error(190, { subcode: 463, message: "Error validating access token: Session has expired" })
      standIn.script(id, rejected, rejected, replies.owner("17841477777777777"))
      assert.strictEqual((yield* failure(graph.mediaOwner(id))).reason._tag, "TokenInvalid")
      const health = yield* graph.health
      assert.isFalse(health.ok)
      assert.strictEqual(health.detail.token, "invalid")
      assert.include(health.error ?? "", "code 190")
      assert.notInclude(JSON.stringify(health), GRAPH_TOKEN)
      // Calls stop until the cooldown lets one probe through; a rejected probe doubles the cooldown.
      const waits: Array<number | undefined> = []
      for (const cooldown of [300, 600]) {
        const open = yield* failure(graph.mediaOwner(id))
        assert.strictEqual(open.reason._tag, "CircuitOpen")
        waits.push(retryAfterOf(open))
        yield* TestClock.adjust(cooldown - 1)
        waits.push(retryAfterOf(yield* failure(graph.mediaOwner(id))))
        yield* TestClock.adjust(1)
        if (cooldown === 300) {
          assert.strictEqual(standIn.callsFor(id).length, 1)
          assert.strictEqual((yield* failure(graph.mediaOwner(id))).reason._tag, "TokenInvalid")
        }
      }
      assert.deepStrictEqual(waits, [300, 1, 600, 1])
      assert.strictEqual(standIn.callsFor(id).length, 2)
      assert.isFalse((yield* graph.health).ok)
      assert.strictEqual((yield* graph.mediaOwner(id)).ownerId, "17841477777777777")
      const healed = yield* graph.health
      assert.isTrue(healed.ok)
      assert.strictEqual(healed.detail.token, "valid")
      assert.strictEqual(healed.detail.circuit, "closed")
      assert.strictEqual(standIn.callsFor(id).length, 3)
    })))

  it.effect("without an access token: nothing is called, health fails and start-up warns", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const logs = captureLogs()
      const graph = yield* makeGraphApi({ instagramAccessToken: Option.none() }).pipe(Effect.provide(logs.layer))
      assert.isFalse(graph.enabled)
      const id = uniqueId()
      assert.strictEqual((yield* failure(graph.mediaOwner(id))).reason._tag, "NotConfigured")
      assert.strictEqual(standIn.callsFor(id).length, 0)
      const health = yield* graph.health
      assert.isFalse(health.ok)
      assert.include(health.error ?? "", "INSTAGRAM_ACCESS_TOKEN")
      assert.isTrue(logs.lines.some((line) => line.includes("INSTAGRAM_ACCESS_TOKEN is not set")), logs.lines.join("\n"))

      const entry = yield* makeGraphApi({ instagramAccessToken: Option.none(), ownerResolution: "entry" })
      assert.isFalse(entry.enabled)
      const entryHealth = yield* entry.health
      assert.isTrue(entryHealth.ok)
      assert.strictEqual(entryHealth.detail.token, "not_needed")
    }))

  it.effect("neither the token, the app secret nor the proof reaches a span, a log line or an error", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const logs = captureLogs()
      const { spans, tracer } = recordSpans()
      const run = Effect.gen(function*() {
        const graph = yield* makeGraphApi({
          graphTimeout: Duration.millis(100),
          graphCircuitThreshold: 100,
          graphThrottlePause: Duration.millis(1)
        })
        const scripted = [
          replies.owner("17841488888888888"),
          replies.usernameOnly(),
          replies.error(100),
          replies.serverError(),
          replies.hang(),
          replies.error(4, { message: `echoing ${GRAPH_TOKEN} back` }),
          replies.error(190, { message: `token ${GRAPH_TOKEN} expired` })
        ]
        const errors: Array<GraphApiError> = []
        for (const reply of scripted) {
          const id = uniqueId()
          standIn.script(id, reply)
          const result = yield* Effect.result(graph.mediaOwner(id))
          if (result._tag === "Failure") errors.push(result.failure)
          yield* Effect.sleep("5 millis")
        }
        return { errors, health: yield* graph.health }
      }).pipe(Effect.provide(logs.layer), Effect.withTracer(tracer))
      const { errors, health } = yield* run

      const attributes = spans.flatMap((span) => [...span.attributes.entries()].map(([k, v]) => `${k}=${String(v)}`))
      const urls = attributes.filter((a) => a.startsWith("url.full="))
      // The client span exists and records the URL, with the secrets redacted.
      assert.isAbove(urls.length, 0)
      assert.isTrue(urls.every((url) => url.includes("access_token=") && url.includes("fields=owner")), urls.join("\n"))
      assert.isTrue(logs.lines.some((line) => line.includes("code 190")), logs.lines.join("\n"))
      assert.isAbove(errors.length, 3)
      const texts = [
        ...attributes,
        ...logs.lines,
        ...errors.flatMap((e) => [e.message, String(e), JSON.stringify(e)]),
        JSON.stringify(health)
      ]
      for (const secret of [GRAPH_TOKEN, APP_SECRET, PROOF]) {
        const leaks = texts.filter((text) => text.includes(secret))
        assert.deepStrictEqual(leaks, [], `leaked ${secret.slice(0, 6)}…`)
      }
    }))

  // ---- the cache in front of the Graph API

  it.effect("concurrent lookups of one media share one call", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { owners } = yield* makeMediaOwners()
      const media = [uniqueId(), uniqueId(), uniqueId()]
      for (const id of media) standIn.script(id, replies.owner(`owner-of-${id}`))
      const results = yield* Effect.forEach(
        Array.from({ length: 300 }, (_, i) => media[i % 3]!),
        (id) => owners.lookup(id),
        { concurrency: "unbounded" }
      )
      assert.isTrue(results.every((r, i) => r._tag === "Owner" && r.ownerId === `owner-of-${media[i % 3]}`))
      for (const id of media) assert.strictEqual(standIn.callsFor(id).length, 1, id)
    }))

  it.effect("owners survive a restart in the media_owners table: a new instance asks nothing", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const first = yield* makeMediaOwners()
      const id = uniqueId()
      standIn.script(id, replies.owner("17841499999999999", "kept"))
      assert.deepStrictEqual(yield* first.owners.lookup(id), { _tag: "Owner", ownerId: "17841499999999999", username: "kept" })
      const second = yield* makeMediaOwners()
      assert.deepStrictEqual(yield* second.owners.lookup(id), { _tag: "Owner", ownerId: "17841499999999999", username: "kept" })
      assert.strictEqual(standIn.callsFor(id).length, 1)
    }))

  it.effect("no owner and permanent errors are remembered for the TTL, then asked again", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { owners } = yield* makeMediaOwners({ graphPermanentFailureTtl: Duration.millis(600) })
      const noOwner = uniqueId()
      const gone = uniqueId()
      standIn.script(noOwner, replies.usernameOnly("theirs"))
      standIn.script(gone, replies.error(100, { message: "Object does not exist" }))
      for (let i = 0; i < 3; i++) {
        assert.deepStrictEqual(yield* owners.lookup(noOwner), { _tag: "NoOwner", username: "theirs" })
        assert.strictEqual((yield* owners.lookup(gone))._tag, "Unresolvable")
      }
      // A second instance finds them in the table too.
      const other = yield* makeMediaOwners({ graphPermanentFailureTtl: Duration.millis(600) })
      assert.strictEqual((yield* other.owners.lookup(gone))._tag, "Unresolvable")
      assert.strictEqual(standIn.callsFor(noOwner).length, 1)
      assert.strictEqual(standIn.callsFor(gone).length, 1)
      yield* Effect.sleep("650 millis")
      yield* owners.lookup(noOwner)
      yield* owners.lookup(gone)
      assert.strictEqual(standIn.callsFor(noOwner).length, 2)
      assert.strictEqual(standIn.callsFor(gone).length, 2)
    }))

  it.effect("failures Meta may recover from are not remembered", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { owners } = yield* makeMediaOwners({ graphTimeout: Duration.millis(100) })
      const id = uniqueId()
      standIn.script(id, replies.error(2), replies.error(2), replies.error(2), replies.error(2), replies.owner("17841400000000042"))
      const error = yield* failure(owners.lookup(id))
      assert.strictEqual(error.reason._tag, "Transient")
      assert.deepStrictEqual(yield* owners.lookup(id), { _tag: "Owner", ownerId: "17841400000000042", username: "owner_account" })
      assert.strictEqual(standIn.callsFor(id).length, 1 + TRANSIENT_RETRIES + 1)
    }))

  it.effect("a caller that stops waiting cancels nothing: the others get the owner, and it is kept", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { owners } = yield* makeMediaOwners()
      const shared = uniqueId()
      const alone = uniqueId()
      standIn.script(shared, replies.later(500, replies.owner("17841400000000071")))
      standIn.script(alone, replies.later(500, replies.owner("17841400000000072")))
      const [gaveUp, waited] = yield* Effect.all([
        Effect.timeoutOption(owners.lookup(shared), "50 millis"),
        owners.lookup(shared)
      ], { concurrency: "unbounded" })
      assert.isTrue(Option.isNone(gaveUp))
      assert.deepStrictEqual(waited, { _tag: "Owner", ownerId: "17841400000000071", username: "owner_account" })
      // Its only caller stops waiting: the call still ends, and its answer is kept.
      assert.isTrue(Option.isNone(yield* Effect.timeoutOption(owners.lookup(alone), "50 millis")))
      yield* Effect.sleep("600 millis")
      assert.deepStrictEqual(yield* owners.lookup(alone), { _tag: "Owner", ownerId: "17841400000000072", username: "owner_account" })
      assert.deepStrictEqual(yield* owners.lookup(shared), waited)
      assert.strictEqual(standIn.callsFor(shared).length, 1)
      assert.strictEqual(standIn.callsFor(alone).length, 1)
    }))

  it.effect("beyond MAX_PENDING_LOOKUPS media looked up at once, another media is refused at once, without a call", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { owners } = yield* makeMediaOwners()
      const waiting = Array.from({ length: MAX_PENDING_LOOKUPS }, () => uniqueId())
      for (const id of waiting) standIn.script(id, replies.hang())
      yield* Effect.forEach(waiting, (id) => Effect.forkChild(owners.lookup(id), { startImmediately: true }), { discard: true })
      const extra = uniqueId()
      standIn.script(extra, replies.owner("17841400000000073"))
      for (let i = 0; i < 2; i++) {
        const { reason } = yield* failure(owners.lookup(extra))
        assert.deepStrictEqual(
          reason._tag === "RateLimited" ? { retryAfterMillis: reason.retryAfterMillis, detail: reason.detail } : reason,
          { retryAfterMillis: 1000, detail: "too many owner lookups waiting" }
        )
      }
      assert.strictEqual(standIn.callsFor(extra).length, 0)
    }))

  it.effect("the memory holds at most GRAPH_CACHE_SIZE media; evicted ones come back from the table", () =>
    Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const { owners } = yield* makeMediaOwners({ graphCacheSize: 2 })
      const media = [uniqueId(), uniqueId(), uniqueId(), uniqueId()]
      for (const id of media) standIn.script(id, replies.owner(`o${id}`))
      for (const id of media) yield* owners.lookup(id)
      assert.strictEqual(yield* owners.size, 2)
      for (const id of media) assert.strictEqual((yield* owners.lookup(id))._tag, "Owner")
      for (const id of media) assert.strictEqual(standIn.callsFor(id).length, 1, id)
    }))
})
