import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { AppNoConfig } from "../../src/layers/App.ts"
import { AppConfig } from "../../src/services/AppConfig.ts"
import { webhookLogSelect, type WebhookLogQuery } from "../../src/services/Operations.ts"
import { Amqp, type ReceivedMessage } from "../support/Amqp.ts"
import { allSamples, ExpositionError, parseExposition, sampleValue } from "../support/Prometheus.ts"
import { SECRET_KEY, TestApp, testConfig } from "../support/TestApp.ts"
import { commentEvent, postWebhook, type SentEvent, sign, uniqueId, webhookText } from "../support/Webhooks.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"

// ---------------------------------------------------------------------------------------------
// Fixtures: the service, its own database (read and written directly) and RabbitMQ with this
// file's queue prefix. `chatico.unroutable` is shared with other files: only our own messages
// are ever taken from it.
// ---------------------------------------------------------------------------------------------

const JournalDb = Layer.unwrap(Effect.map(TestApp, (app) =>
  PgClient.layer({
    url: Redacted.make(`postgres://postgres@127.0.0.1:5432/${app.database}`),
    maxConnections: 2
  })))

const environment = (name: string) =>
  Layer.mergeAll(JournalDb, Amqp.layer(name)).pipe(Layer.provideMerge(TestApp.layer(name)))

const UNROUTABLE = "chatico.unroutable"
const HEX64 = /^[0-9a-f]{64}$/

const LogEntry = Schema.Struct({
  event_id: Schema.String,
  received_at: Schema.String,
  status: Schema.String,
  object: Schema.String,
  field: Schema.String,
  entry_id: Schema.String,
  media_id: Schema.NullOr(Schema.String),
  owner_id: Schema.NullOr(Schema.String),
  worker_app_id: Schema.NullOr(Schema.String),
  attempts: Schema.Number,
  last_error: Schema.NullOr(Schema.String),
  delivered_at: Schema.NullOr(Schema.String),
  value: Schema.Unknown
})
type LogEntry = typeof LogEntry.Type
const LogPage = Schema.Struct({ items: Schema.Array(LogEntry), next_cursor: Schema.NullOr(Schema.String) })
type LogPage = typeof LogPage.Type

const ReplayJson = Schema.Struct({ queued: Schema.Number, more: Schema.Boolean })
const Counts = Schema.NullOr(Schema.Struct({ messages: Schema.Number, consumers: Schema.Number }))
const QueuesJson = Schema.Struct({
  items: Schema.Array(Schema.Struct({
    worker_app_id: Schema.String,
    name: Schema.String,
    owner_id: Schema.String,
    is_active: Schema.Boolean,
    queue_name: Schema.String,
    queue: Counts,
    dead_letter_queue: Counts
  })),
  unroutable: Counts,
  broker_error: Schema.NullOr(Schema.String)
})
const Check = Schema.Struct({
  ok: Schema.Boolean,
  latency_ms: Schema.optional(Schema.Number),
  error: Schema.optional(Schema.String),
  detail: Schema.optional(Schema.Record(Schema.String, Schema.Unknown))
})
const HealthJson = Schema.Struct({
  status: Schema.Literal("ok"),
  checks: Schema.Struct({
    database: Check,
    rabbitmq: Check,
    pipeline: Schema.Struct({
      ok: Schema.Boolean,
      detail: Schema.Struct({ journal_mailbox: Schema.Number, delivery_mailbox: Schema.Number, in_flight: Schema.Number })
    })
  })
})
const MetricsJson = Schema.Record(
  Schema.String,
  Schema.Array(Schema.Struct({
    attributes: Schema.Record(Schema.String, Schema.String),
    count: Schema.optional(Schema.Number),
    sum: Schema.optional(Schema.Number),
    value: Schema.optional(Schema.Number)
  }))
)
type MetricEntry = (typeof MetricsJson.Type)[string][number]
const ValidationJson = Schema.Struct({ detail: Schema.Array(Schema.Struct({ loc: Schema.Array(Schema.Union([Schema.String, Schema.Number])) })) })

const decode = Schema.decodeUnknownSync

/** POSTs one signed webhook of these entries and expects it accepted. */
const send = (entries: ReadonlyArray<ReadonlyArray<SentEvent>>, object = "instagram") =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const response = yield* postWebhook(app, webhookText(entries, { object }))
    assert.strictEqual(response.status, 200, response.text)
  })

/** `n` comments on one owner's media, one webhook each (so each has its own `received_at`). */
const sendEach = (ownerId: string, n: number) =>
  Effect.gen(function*() {
    const events = Array.from({ length: n }, () => commentEvent(ownerId))
    for (const event of events) {
      yield* send([[event]])
      // Distinct arrival milliseconds, so `since`/`until` can fall between them.
      yield* Effect.sleep("3 millis")
    }
    return events
  })

interface JournalRow {
  readonly event_id: string
  readonly value_raw: string
  readonly status: string
  readonly attempts: number
  readonly received_at: Date
}

const rowsOf = (events: ReadonlyArray<SentEvent>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<JournalRow>`
      SELECT event_id, value_raw, status, attempts, received_at FROM webhook_events
      WHERE value_raw IN ${sql.in(events.map((e) => e.valueRaw))}
    `.pipe(Effect.orDie)
  })

/** The journal rows of these events once none is pending, in the order of `events`. */
const settledRows = (events: ReadonlyArray<SentEvent>) =>
  Effect.gen(function*() {
    const rows = yield* eventually(
      rowsOf(events),
      (rows) => rows.length === events.length && rows.every((row) => row.status !== "pending")
    )
    const byValue = new Map(rows.map((row) => [row.value_raw, row]))
    return events.map((event) => {
      const row = byValue.get(event.valueRaw)
      assert.isDefined(row, `no journal row for ${event.valueRaw}`)
      assert.notStrictEqual(row?.status, "pending", `still pending: ${event.valueRaw}`)
      return row ?? { event_id: "", value_raw: "", status: "", attempts: -1, received_at: new Date(0) }
    })
  })

/** Pending rows the sweeper will pick up (rows parked with a far lease by a test are not counted). */
const livePending = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly n: number }>`
    SELECT count(*)::int AS n FROM webhook_events
    WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now() + interval '10 minutes')
  `.pipe(Effect.orDie)
  return rows[0]?.n ?? -1
})

/** Waits until nothing is pending, in a mailbox or in flight: every outcome is counted and recorded. */
const quiescent = Effect.gen(function*() {
  const app = yield* TestApp
  const state = Effect.gen(function*() {
    const health = yield* app.request<unknown>("/monitoring/health", { auth: false })
    const detail = decode(HealthJson)(health.body).checks.pipeline.detail
    return { ...detail, pending: yield* livePending }
  })
  const last = yield* eventually(
    state,
    (s) => s.pending === 0 && s.journal_mailbox === 0 && s.delivery_mailbox === 0 && s.in_flight === 0
  )
  assert.deepStrictEqual(last, { journal_mailbox: 0, delivery_mailbox: 0, in_flight: 0, pending: 0 })
})

const logs = (query: Record<string, string>) =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const response = yield* app.request<unknown>(`/monitoring/webhook-logs?${new URLSearchParams(query).toString()}`)
    assert.strictEqual(response.status, 200, `${JSON.stringify(query)}: ${response.text}`)
    return decode(LogPage)(response.body)
  })

/** Every page of a listing, following `next_cursor` until it is null. */
const allPages = (query: Record<string, string>) =>
  Effect.gen(function*() {
    const pages: Array<LogPage> = []
    let cursor: string | null = null
    do {
      const page: LogPage = yield* logs(cursor === null ? query : { ...query, cursor })
      pages.push(page)
      cursor = page.next_cursor
      assert.isBelow(pages.length, 1000, "the cursor never ends")
    } while (cursor !== null)
    return pages
  })

/** Newest first: `received_at` descending, then `event_id` descending (the journal's order). */
const assertNewestFirst = (items: ReadonlyArray<LogEntry>, tieByEventId = true) => {
  for (let i = 1; i < items.length; i++) {
    const a = items[i - 1]!
    const b = items[i]!
    const ta = Date.parse(a.received_at)
    const tb = Date.parse(b.received_at)
    assert.isAtLeast(ta, tb, `item ${i} is newer than item ${i - 1}`)
    if (tieByEventId && ta === tb) assert.isTrue(a.event_id > b.event_id, `tie at ${a.received_at} not by event_id`)
  }
}

const replay = (filter: Record<string, string>) =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const response = yield* app.request<unknown>("/monitoring/replay", { method: "POST", json: filter })
    assert.strictEqual(response.status, 200, `${JSON.stringify(filter)}: ${response.text}`)
    return decode(ReplayJson)(response.body)
  })

const replayOne = (eventId: string) =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const response = yield* app.request<unknown>(`/monitoring/webhook-logs/${eventId}/replay`, { method: "POST" })
    assert.strictEqual(response.status, 200, response.text)
    return decode(ReplayJson)(response.body)
  })

const attemptOf = (message: ReceivedMessage): unknown => message.properties.headers?.["x-attempt"]
const eventIdOf = (message: ReceivedMessage): unknown => message.properties.messageId

/** Message ids with how many times each arrived and the `x-attempt`s they came with. */
const tally = (messages: ReadonlyArray<ReceivedMessage>) => {
  const byId = new Map<string, Array<unknown>>()
  for (const message of messages) {
    const id = String(eventIdOf(message))
    byId.set(id, [...(byId.get(id) ?? []), attemptOf(message)])
  }
  return byId
}

/** Checks a message is the event's: same id in the body and the properties. */
const assertMessageOf = (message: ReceivedMessage, eventId: string, attempt: number) => {
  assert.strictEqual(eventIdOf(message), eventId)
  const body: unknown = JSON.parse(message.text)
  assert.deepInclude(decode(Schema.Struct({ event_id: Schema.String }))(body), { event_id: eventId })
  assert.strictEqual(attemptOf(message), attempt, `x-attempt of ${eventId}`)
}

const metricsText = Effect.gen(function*() {
  const app = yield* TestApp
  const response = yield* app.request<unknown>("/metrics")
  assert.strictEqual(response.status, 200, response.text)
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/)
  return response.text
})

const metricsJson = Effect.gen(function*() {
  const app = yield* TestApp
  const response = yield* app.request<unknown>("/monitoring/metrics")
  assert.strictEqual(response.status, 200, response.text)
  return decode(MetricsJson)(response.body)
})

// ---------------------------------------------------------------------------------------------
// The exposition reader itself: it must refuse what Prometheus refuses, or the checks below prove nothing.
// ---------------------------------------------------------------------------------------------

describe("Prometheus exposition reader", () => {
  it("reads HELP, TYPE, labels with escapes, and histograms", () => {
    const parsed = parseExposition(
      [
        "# HELP c_total A \\\\ counter\\nwith two lines",
        "# TYPE c_total counter",
        "c_total{a=\"x\\\"y\",b=\"back\\\\slash\",c=\"new\\nline\"} 3",
        "c_total 1e3",
        "# a comment",
        "# TYPE h histogram",
        "h_bucket{k=\"1\",le=\"0.5\"} 1",
        "h_bucket{k=\"1\",le=\"1\"} 2",
        "h_bucket{k=\"1\",le=\"+Inf\"} 2",
        "h_sum{k=\"1\"} 1.25",
        "h_count{k=\"1\"} 2",
        "g NaN",
        ""
      ].join("\n")
    )
    assert.deepStrictEqual([...parsed.keys()], ["c_total", "h", "g"])
    assert.strictEqual(parsed.get("c_total")?.help, "A \\ counter\nwith two lines")
    assert.strictEqual(sampleValue(parsed, "c_total", { a: "x\"y", b: "back\\slash", c: "new\nline" }), 3)
    assert.strictEqual(sampleValue(parsed, "c_total"), 1000)
    assert.strictEqual(sampleValue(parsed, "h_count", { k: "1" }), 2)
    assert.strictEqual(parsed.get("g")?.type, "untyped")
    assert.strictEqual(allSamples(parsed).length, 8)
  })

  it("refuses what Prometheus refuses", () => {
    const bad: ReadonlyArray<readonly [string, string]> = [
      ["no trailing newline", "a 1"],
      ["bad escape", "a{l=\"\\t\"} 1\n"],
      ["unterminated label", "a{l=\"x} 1\n"],
      ["bad value", "a 1x\n"],
      ["bad name", "1a 1\n"],
      ["unknown type", "# TYPE a countr\na 1\n"],
      ["TYPE after samples", "a 1\n# TYPE a gauge\n"],
      ["two TYPEs", "# TYPE a gauge\n# TYPE a gauge\na 1\n"],
      ["repeated series", "a{x=\"1\"} 1\na{x=\"1\"} 2\n"],
      ["split group", "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n"],
      ["negative counter", "# TYPE a counter\na -1\n"],
      [
        "bucket counts go down",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"
      ],
      ["no +Inf bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n"],
      ["+Inf is not _count", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"],
      ["buckets out of order", "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"],
      ["no _sum", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n"]
    ]
    for (const [name, text] of bad) {
      assert.throws(() => parseExposition(text), ExpositionError, undefined, name)
    }
  })
})

// ---------------------------------------------------------------------------------------------

layer(environment("monitoring"), { excludeTestServices: true, timeout: "90 seconds" })("monitoring API", (it) => {
  it.effect("/monitoring/health needs no token and reports database, rabbitmq and the pipeline", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      for (const auth of [false, "wrong", true] as const) {
        const response = yield* app.request<unknown>("/monitoring/health", { auth })
        assert.strictEqual(response.status, 200, response.text)
        const health = decode(HealthJson)(response.body)
        assert.isTrue(health.checks.database.ok)
        assert.isTrue(health.checks.rabbitmq.ok)
        assert.isTrue(health.checks.pipeline.ok)
        assert.isAtLeast(health.checks.pipeline.detail.in_flight, 0)
      }
    }))

  it.effect("every other monitoring route answers 401 without a bearer token or with a wrong one", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const routes: ReadonlyArray<readonly [string, string, unknown]> = [
        ["GET", "/metrics", undefined],
        ["GET", "/monitoring/metrics", undefined],
        ["GET", "/monitoring/webhook-logs", undefined],
        ["GET", "/monitoring/webhook-logs?status=routed&limit=5", undefined],
        ["GET", "/monitoring/queues", undefined],
        ["POST", `/monitoring/webhook-logs/${"a".repeat(64)}/replay`, undefined],
        ["POST", "/monitoring/replay", { owner_id: "1" }]
      ]
      const wrong = [false, "wrong", `${SECRET_KEY.slice(0, -1)}X`, `${SECRET_KEY}0`, ""] as const
      for (const [method, path, json] of routes) {
        for (const auth of wrong) {
          const response = yield* app.request<unknown>(path, { method, auth, json })
          assert.strictEqual(response.status, 401, `${method} ${path} auth=${String(auth)}`)
          assert.notInclude(response.text, "chatico_", `${method} ${path}`)
        }
        const basic = yield* app.request<unknown>(path, {
          method,
          auth: false,
          json,
          headers: { authorization: `Basic ${Buffer.from(`admin:${SECRET_KEY}`).toString("base64")}` }
        })
        assert.strictEqual(basic.status, 401, `${method} ${path} Basic`)
        // The right token opens the same route.
        const allowed = yield* app.request<unknown>(path, { method, json })
        assert.oneOf(allowed.status, [200, 404], `${method} ${path} with the token: ${allowed.text}`)
      }
    }))

  it.effect("/metrics is a valid exposition whose counters move by exactly what was sent", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("metrics")
      yield* quiescent
      const before = parseExposition(yield* metricsText)
      const read = (exposition: typeof before, name: string, labels: Record<string, string> = {}) =>
        sampleValue(exposition, name, labels) ?? 0

      // 4 webhooks with 1 + 2 + 1 + 3 = 7 events, then one repeated (1 duplicate), one unsigned, one not JSON.
      const owner = workerApp.owner_id
      const bodies = [1, 2, 1, 3].map((n) => Array.from({ length: n }, () => commentEvent(owner)))
      for (const events of bodies) yield* send([events])
      const sent = bodies.flat()
      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: sent.length })
      assert.strictEqual(messages.length, sent.length)
      yield* settledRows(sent)
      const repeated = yield* postWebhook(app, webhookText([bodies[0]!]))
      assert.strictEqual(repeated.status, 200, repeated.text)
      const unsigned = yield* postWebhook(app, webhookText([[commentEvent(owner)]]), { signature: "sha256=00" })
      assert.strictEqual(unsigned.status, 401)
      const notJson = "{\"object\": \"instagram\", \"entry\": ["
      const badRequest = yield* postWebhook(app, notJson, { signature: sign(notJson) })
      assert.strictEqual(badRequest.status, 400)
      yield* quiescent

      const text = yield* metricsText
      const after = parseExposition(text)
      const delta = (name: string, labels: Record<string, string> = {}) => {
        assert.isDefined(sampleValue(after, name, labels), `${name} ${JSON.stringify(labels)} is exposed`)
        return read(after, name, labels) - read(before, name, labels)
      }
      assert.strictEqual(after.get("chatico_webhooks_total")?.type, "counter")
      assert.strictEqual(after.get("chatico_events_total")?.type, "counter")
      assert.strictEqual(after.get("chatico_accept_latency_seconds")?.type, "histogram")
      assert.strictEqual(delta("chatico_webhooks_total", { result: "accepted" }), bodies.length + 1)
      assert.strictEqual(delta("chatico_webhooks_total", { result: "unauthorized" }), 1)
      assert.strictEqual(delta("chatico_webhooks_total", { result: "bad_request" }), 1)
      assert.strictEqual(delta("chatico_events_total", { outcome: "accepted" }), sent.length)
      assert.strictEqual(delta("chatico_events_total", { outcome: "routed" }), sent.length)
      assert.strictEqual(delta("chatico_events_total", { outcome: "duplicate" }), bodies[0]!.length)
      assert.strictEqual(delta("chatico_routed_events_total", { worker_app_id: workerApp.id }), sent.length)
      assert.strictEqual(delta("chatico_accept_latency_seconds_count"), bodies.length + 1)
      assert.strictEqual(delta("chatico_delivery_latency_seconds_count"), sent.length)
      assert.isAtLeast(delta("chatico_publish_confirm_latency_seconds_count"), sent.length)
      assert.strictEqual(sampleValue(after, "chatico_pending_events"), 0)
      for (const stage of ["journal", "delivery"]) {
        assert.strictEqual(sampleValue(after, "chatico_mailbox_depth", { stage }), 0, stage)
      }
    }))

  it.effect("/monitoring/metrics answers JSON with the same counter and histogram values as /metrics", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("metrics-json")
      // At least one of each kind exists: counters, gauges and histograms with observations.
      const events = yield* sendEach(workerApp.owner_id, 2)
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 2 })).length, 2)
      yield* settledRows(events)
      yield* quiescent
      // The JSON is rendered from the same metrics: every chatico counter and histogram agrees.
      const json = yield* metricsJson
      const again = parseExposition(yield* metricsText)
      let compared = 0
      for (const family of again.values()) {
        if (!family.name.startsWith("chatico_") || (family.type !== "counter" && family.type !== "histogram")) continue
        const entries = json[family.name]
        assert.isDefined(entries, `${family.name} in the JSON`)
        const series = family.samples.filter((s) =>
          family.type === "counter" ? s.name === family.name : s.name === `${family.name}_count`
        )
        assert.strictEqual(entries?.length, series.length, family.name)
        for (const sample of series) {
          const entry: MetricEntry | undefined = entries?.find((e: MetricEntry) =>
            Object.keys(e.attributes).length === Object.keys(sample.labels).length &&
            Object.entries(sample.labels).every(([k, v]) => e.attributes[k] === v)
          )
          assert.isDefined(entry, `${family.name} ${JSON.stringify(sample.labels)} in the JSON`)
          assert.strictEqual(entry?.count, sample.value, `${family.name} ${JSON.stringify(sample.labels)}`)
          if (family.type === "histogram") {
            assert.strictEqual(entry?.sum, sampleValue(again, `${family.name}_sum`, sample.labels), family.name)
          }
          compared++
        }
      }
      assert.isAtLeast(compared, 8)
      const accepted = json["chatico_webhooks_total"]?.find((e) => e.attributes["result"] === "accepted")
      assert.strictEqual(accepted?.count, sampleValue(again, "chatico_webhooks_total", { result: "accepted" }))
    }))

  it.effect("webhook logs filter by status, owner, worker app and since, newest first, with a limit", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const appA = yield* createWorkerApp("logs-a")
      const appB = yield* createWorkerApp("logs-b")
      const stranger = uniqueId() // no worker app: unroutable
      const routedA = yield* sendEach(appA.owner_id, 3)
      const routedB = yield* sendEach(appB.owner_id, 2)
      const unroutable = yield* sendEach(stranger, 2)
      const ignored = commentEvent(stranger)
      yield* send([[ignored]], "page")
      // Meta redelivers the first of A's events twice.
      yield* send([[routedA[0]!]])
      yield* send([[routedA[0]!]])
      assert.strictEqual((yield* amqp.drainQueue(appA.queue_name, { expected: 3 })).length, 3)
      assert.strictEqual((yield* amqp.drainQueue(appB.queue_name, { expected: 2 })).length, 2)
      const rowsA = yield* settledRows(routedA)
      const rowsB = yield* settledRows(routedB)
      const rowsU = yield* settledRows(unroutable)
      const [rowIgnored] = yield* settledRows([ignored])
      const ids = (rows: ReadonlyArray<{ readonly event_id: string }>) => rows.map((r) => r.event_id).sort()
      yield* amqp.takeMatching(UNROUTABLE, (m) => ids(rowsU).includes(String(eventIdOf(m))), {
        expected: rowsU.length,
        idleMs: 5000
      })

      // owner_id: exactly that owner's events, newest first.
      const byOwner = yield* logs({ owner_id: appA.owner_id })
      assert.deepStrictEqual(ids(byOwner.items), ids(rowsA))
      assert.isNull(byOwner.next_cursor)
      assertNewestFirst(byOwner.items)
      assert.isTrue(byOwner.items.every((e) => e.status === "routed" && e.worker_app_id === appA.id && e.attempts === 1))
      assert.deepStrictEqual(byOwner.items.map((e) => e.event_id), [...rowsA].reverse().map((r) => r.event_id))
      const strangers = yield* logs({ owner_id: stranger })
      assert.deepStrictEqual(ids(strangers.items), ids([...rowsU]))
      assert.isTrue(strangers.items.every((e) => e.status === "unroutable" && e.worker_app_id === null))

      // worker_app_id: exactly that app's events.
      const byApp = yield* logs({ worker_app_id: appB.id })
      assert.deepStrictEqual(ids(byApp.items), ids(rowsB))
      assertNewestFirst(byApp.items)
      const nobody = yield* logs({ worker_app_id: "00000000-0000-4000-8000-000000000000" })
      assert.deepStrictEqual(nobody, { items: [], next_cursor: null })

      // status: only that status; ours of it in, ours of the others out; as many as the journal holds.
      const sql = yield* SqlClient.SqlClient
      const statusCount = (status: string) =>
        sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events WHERE status = ${status}`.pipe(
          Effect.orDie,
          Effect.map((rows) => rows[0]?.n ?? -1)
        )
      const expectations: ReadonlyArray<readonly [string, ReadonlyArray<string>, ReadonlyArray<string>]> = [
        ["routed", ids([...rowsA, ...rowsB]), ids([...rowsU, rowIgnored!])],
        ["unroutable", ids(rowsU), ids([...rowsA, ...rowsB, rowIgnored!])],
        ["ignored", ids([rowIgnored!]), ids([...rowsA, ...rowsB, ...rowsU])]
      ]
      for (const [status, mine, notMine] of expectations) {
        const pages = yield* allPages({ status, limit: "500" })
        const items = pages.flatMap((p) => p.items)
        assert.isTrue(items.every((e) => e.status === status), status)
        for (const id of mine) assert.include(items.map((e) => e.event_id), id, status)
        for (const id of notMine) assert.notInclude(items.map((e) => e.event_id), id, status)
        assert.strictEqual(items.length, yield* statusCount(status), status)
        assertNewestFirst(items)
      }
      const pending = yield* logs({ status: "pending" })
      assert.deepStrictEqual(pending.items, [])

      // duplicate: one row per redelivery, carrying the event it repeats, newest first.
      const duplicates = yield* logs({ status: "duplicate", owner_id: appA.owner_id })
      assert.strictEqual(duplicates.items.length, 2)
      assert.isTrue(duplicates.items.every((e) => e.status === "duplicate" && e.event_id === rowsA[0]!.event_id))
      assert.isAbove(Date.parse(duplicates.items[1]!.received_at), rowsA[0]!.received_at.getTime() - 1)
      assertNewestFirst(duplicates.items, false)
      const duplicatesOfB = yield* logs({ status: "duplicate", worker_app_id: appB.id })
      assert.deepStrictEqual(duplicatesOfB.items, [])

      // since: inclusive, to the millisecond; with another filter too.
      const middle = byOwner.items.find((e) => e.event_id === rowsA[1]!.event_id)
      assert.isDefined(middle)
      const since = middle?.received_at ?? ""
      const sinceA = yield* logs({ owner_id: appA.owner_id, since })
      assert.deepStrictEqual(ids(sinceA.items), ids(rowsA.slice(1)))
      const sinceAll = yield* allPages({ since, limit: "500" })
      const sinceItems = sinceAll.flatMap((p) => p.items)
      assert.isTrue(sinceItems.every((e) => Date.parse(e.received_at) >= Date.parse(since)))
      for (const id of ids([...rowsA.slice(1), ...rowsB, ...rowsU])) assert.include(sinceItems.map((e) => e.event_id), id)
      assert.notInclude(sinceItems.map((e) => e.event_id), rowsA[0]!.event_id)
      const later = new Date(Date.parse(since) + 1).toISOString()
      const sinceLater = yield* logs({ owner_id: appA.owner_id, since: later })
      assert.deepStrictEqual(ids(sinceLater.items), ids(rowsA.slice(2)))
      const future = yield* logs({ since: new Date(Date.now() + 3_600_000).toISOString() })
      assert.deepStrictEqual(future.items, [])

      // limit: the newest `limit`, and a cursor to the rest.
      const two = yield* logs({ owner_id: appA.owner_id, limit: "2" })
      assert.deepStrictEqual(two.items.map((e) => e.event_id), byOwner.items.slice(0, 2).map((e) => e.event_id))
      assert.isString(two.next_cursor)
      const exact = yield* logs({ owner_id: appA.owner_id, limit: "3" })
      assert.strictEqual(exact.items.length, 3)
      assert.isNull(exact.next_cursor, "no cursor when nothing follows")

      // The entry tells the event's story.
      const entry = byOwner.items.find((e) => e.event_id === rowsA[2]!.event_id)
      assert.strictEqual(entry?.received_at, rowsA[2]!.received_at.toISOString())
      assert.deepStrictEqual(entry?.value, JSON.parse(routedA[2]!.valueRaw))
      assert.strictEqual(entry?.field, "comments")
      assert.strictEqual(entry?.entry_id, appA.owner_id)
      assert.isString(entry?.delivered_at)
    }))

  it.effect("the cursor pages through everything exactly once, in order, ties included", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("cursor")
      // Events of one webhook share `received_at`: pages must split the tie by event_id.
      const batch = Array.from({ length: 7 }, () => commentEvent(workerApp.owner_id))
      yield* send([batch.slice(0, 4)])
      yield* send([batch.slice(4)])
      const single = yield* sendEach(workerApp.owner_id, 3)
      yield* send([[single[0]!]]) // a duplicate
      yield* send([[batch[0]!]])
      yield* send([[batch[5]!]])
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 10 })).length, 10)
      yield* settledRows([...batch, ...single])
      yield* quiescent

      const sql = yield* SqlClient.SqlClient
      const total = (yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie))[0]?.n
      const everything = yield* logs({ limit: "500" })
      assert.strictEqual(everything.items.length, total)
      assert.isNull(everything.next_cursor)
      assertNewestFirst(everything.items)

      for (
        const [query, expected] of [
          [{}, everything.items.map((e) => e.event_id)],
          [{ owner_id: workerApp.owner_id }, everything.items.filter((e) => e.owner_id === workerApp.owner_id).map((e) => e.event_id)],
          [{ worker_app_id: workerApp.id }, everything.items.filter((e) => e.worker_app_id === workerApp.id).map((e) => e.event_id)],
          [{ status: "routed" }, everything.items.filter((e) => e.status === "routed").map((e) => e.event_id)]
        ] as const
      ) {
        assert.isAtLeast(expected.length, 10, JSON.stringify(query))
        for (const limit of [1, 2, 3, 4]) {
          const pages = yield* allPages({ ...query, limit: String(limit) })
          const seen = pages.flatMap((p) => p.items.map((e) => e.event_id))
          assert.deepStrictEqual(seen, expected, `${JSON.stringify(query)} limit=${limit}`)
          assert.strictEqual(pages.length, Math.ceil(expected.length / limit))
          assert.isTrue(pages.slice(0, -1).every((p) => p.items.length === limit && p.next_cursor !== null))
          assert.isNull(pages[pages.length - 1]!.next_cursor)
        }
      }

      // Duplicates page by their own order (arrival, then id): every one once.
      const duplicates = yield* logs({ status: "duplicate", limit: "500" })
      assert.isAtLeast(duplicates.items.length, 3)
      const key = (e: LogEntry) => `${e.event_id}@${e.received_at}`
      for (const limit of [1, 2]) {
        const pages = yield* allPages({ status: "duplicate", limit: String(limit) })
        assert.deepStrictEqual(pages.flatMap((p) => p.items.map(key)), duplicates.items.map(key), `limit=${limit}`)
        assert.isNull(pages[pages.length - 1]!.next_cursor)
      }
    }))

  it.effect("webhook logs refuse a bogus cursor, status, since or limit with 4xx, never 5xx", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
      const cursors = [
        "not-a-cursor",
        "%%%",
        b64({ received_at: "2026-01-01T00:00:00.000Z" }),
        b64(["2026-01-01T00:00:00.000Z"]),
        b64(["not a time", "a".repeat(64)]),
        b64([1, 2]),
        b64(null)
      ]
      for (const cursor of cursors) {
        for (const status of [undefined, "routed", "duplicate"]) {
          const query = new URLSearchParams({ cursor, ...(status === undefined ? {} : { status }) })
          const response = yield* app.request<unknown>(`/monitoring/webhook-logs?${query.toString()}`)
          assert.strictEqual(response.status, 422, `cursor ${cursor} status ${status}: ${response.text}`)
        }
      }
      for (
        const [query, loc] of [
          ["status=bogus", "query.status"],
          ["status=ROUTED", "query.status"],
          ["since=yesterday", "query.since"],
          ["since=", "query.since"],
          // not calendar dates (no 29 February in a century year not divisible by 400); Postgres refuses them
          ["since=1900-02-29T00:00:00Z", "query.since"],
          ["since=2100-02-29", "query.since"],
          ["limit=0", "query.limit"],
          ["limit=501", "query.limit"],
          ["limit=ten", "query.limit"],
          ["owner_id=abc", "query.owner_id"],
          ["worker_app_id=not-a-uuid", "query.worker_app_id"]
        ] as const
      ) {
        const response = yield* app.request<unknown>(`/monitoring/webhook-logs?${query}`)
        assert.strictEqual(response.status, 422, `${query}: ${response.text}`)
        assert.include(decode(ValidationJson)(response.body).detail.map((d) => d.loc.join(".")), loc, query)
      }
    }))

  it.effect("a caller's cursor or time is never a server fault: another listing's cursor, out-of-range times", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      // A real cursor of the event listing (its key is an event id), and one forged with a non-numeric key,
      // both handed to the duplicates listing (whose key is a number).
      const workerApp = yield* createWorkerApp("cross-cursor")
      yield* sendEach(workerApp.owner_id, 2)
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 2 })).length, 2)
      const first = yield* logs({ owner_id: workerApp.owner_id, limit: "1" })
      assert.isString(first.next_cursor)
      const forged = Buffer.from(JSON.stringify(["2026-01-01T00:00:00.000Z", "x"])).toString("base64url")
      // A time JavaScript reads but Postgres cannot hold.
      const ancient = "-271821-04-20T00:00:00.000Z"
      const requests: ReadonlyArray<readonly [string, string, unknown]> = [
        ["GET", `/monitoring/webhook-logs?${new URLSearchParams({ status: "duplicate", cursor: first.next_cursor ?? "" })}`, undefined],
        ["GET", `/monitoring/webhook-logs?${new URLSearchParams({ status: "duplicate", cursor: forged })}`, undefined],
        ["GET", `/monitoring/webhook-logs?${new URLSearchParams({ since: ancient })}`, undefined],
        [
          "GET",
          `/monitoring/webhook-logs?${new URLSearchParams({ cursor: Buffer.from(JSON.stringify([ancient, "a".repeat(64)])).toString("base64url") })}`,
          undefined
        ],
        ["POST", "/monitoring/replay", { since: ancient }]
      ]
      const answers: Array<string> = []
      for (const [method, path, json] of requests) {
        const response = yield* app.request<unknown>(path, { method, json })
        answers.push(`${method} ${path} ${JSON.stringify(json ?? null)} -> ${response.status} ${response.text}`)
      }
      assert.deepStrictEqual(answers.filter((a) => !/ -> 4\d\d /.test(a)), [], "each answered 4xx")
    }))

  it.effect("replays one event with the same id and x-attempt one higher; 404 unknown, 422 malformed", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("replay-one")
      const [event, other] = yield* sendEach(workerApp.owner_id, 2)
      const first = yield* amqp.drainQueue(workerApp.queue_name, { expected: 2 })
      assert.strictEqual(first.length, 2)
      const [row] = yield* settledRows([event!])
      const eventId = row!.event_id
      assert.match(eventId, HEX64)
      const original = first.find((m) => eventIdOf(m) === eventId)
      assert.isDefined(original)
      if (original !== undefined) assertMessageOf(original, eventId, 1)

      assert.deepStrictEqual(yield* replayOne(eventId), { queued: 1, more: false })
      const again = yield* amqp.drainQueue(workerApp.queue_name, { expected: 1, settleMs: 1000 })
      assert.strictEqual(again.length, 1, "only the replayed event arrives again")
      assertMessageOf(again[0]!, eventId, 2)
      assert.strictEqual(again[0]!.text, original?.text, "the same message body")
      const [replayed] = yield* settledRows([event!])
      assert.deepInclude(replayed, { status: "routed", attempts: 2, event_id: eventId })
      assert.strictEqual(replayed?.received_at.getTime(), row?.received_at.getTime())
      const [untouched] = yield* settledRows([other!])
      assert.strictEqual(untouched?.attempts, 1)
      const entry = (yield* logs({ owner_id: workerApp.owner_id })).items.find((e) => e.event_id === eventId)
      assert.strictEqual(entry?.attempts, 2)

      // Once more: attempt 3.
      assert.deepStrictEqual(yield* replayOne(eventId), { queued: 1, more: false })
      const third = yield* amqp.drainQueue(workerApp.queue_name, { expected: 1, settleMs: 1000 })
      assert.strictEqual(third.length, 1)
      assertMessageOf(third[0]!, eventId, 3)

      const unknown = yield* app.request<unknown>(`/monitoring/webhook-logs/${"0".repeat(64)}/replay`, { method: "POST" })
      assert.strictEqual(unknown.status, 404, unknown.text)
      for (const bad of ["abc", eventId.toUpperCase(), eventId.slice(1), `${eventId}0`, `${eventId.slice(1)}g`]) {
        const response = yield* app.request<unknown>(`/monitoring/webhook-logs/${bad}/replay`, { method: "POST" })
        assert.strictEqual(response.status, 422, `${bad}: ${response.text}`)
        assert.include(decode(ValidationJson)(response.body).detail.map((d) => d.loc.join(".")), "path.event_id")
      }
      // Nothing more arrived for any of this.
      assert.deepStrictEqual(yield* amqp.drainQueue(workerApp.queue_name, { expected: 0, firstMessageMs: 1500 }), [])
    }))

  it.effect("replays by filter exactly the matching events, and refuses an empty or invalid filter", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const appR = yield* createWorkerApp("replay-owner")
      const appS = yield* createWorkerApp("replay-since")
      const eventsR = yield* sendEach(appR.owner_id, 3)
      const eventsS = yield* sendEach(appS.owner_id, 4)
      assert.strictEqual((yield* amqp.drainQueue(appR.queue_name, { expected: 3 })).length, 3)
      assert.strictEqual((yield* amqp.drainQueue(appS.queue_name, { expected: 4 })).length, 4)
      const rowsR = yield* settledRows(eventsR)
      const rowsS = yield* settledRows(eventsS)
      yield* quiescent

      // owner_id: all of that owner's events, and nobody else's.
      assert.deepStrictEqual(yield* replay({ owner_id: appR.owner_id }), { queued: 3, more: false })
      const againR = yield* amqp.drainQueue(appR.queue_name, { expected: 3, settleMs: 1000 })
      assert.deepStrictEqual(
        [...tally(againR)].sort(),
        rowsR.map((r): [string, Array<unknown>] => [r.event_id, [2]]).sort()
      )
      assert.deepStrictEqual(yield* amqp.drainQueue(appS.queue_name, { expected: 0, firstMessageMs: 1000 }), [])

      // status + since (inclusive) + until (exclusive), to the millisecond: S's 2nd and 3rd events only.
      const sinceIso = rowsS[1]!.received_at.toISOString()
      const untilIso = rowsS[3]!.received_at.toISOString()
      assert.isBelow(rowsS[2]!.received_at.getTime(), rowsS[3]!.received_at.getTime())
      yield* quiescent
      assert.deepStrictEqual(yield* replay({ status: "routed", since: sinceIso, until: untilIso }), { queued: 2, more: false })
      const againS = yield* amqp.drainQueue(appS.queue_name, { expected: 2, settleMs: 1000 })
      assert.deepStrictEqual(
        [...tally(againS)].sort(),
        [rowsS[1]!, rowsS[2]!].map((r): [string, Array<unknown>] => [r.event_id, [2]]).sort()
      )
      assert.deepStrictEqual(yield* amqp.drainQueue(appR.queue_name, { expected: 0, firstMessageMs: 1000 }), [])
      const afterS = yield* settledRows(eventsS)
      assert.deepStrictEqual(afterS.map((r) => r.attempts), [1, 2, 2, 1])
      const afterR = yield* settledRows(eventsR)
      assert.deepStrictEqual(afterR.map((r) => r.attempts), [2, 2, 2])

      // A status that matches none of these: nothing.
      yield* quiescent
      assert.deepStrictEqual(
        yield* replay({ status: "dead_lettered", owner_id: appR.owner_id }),
        { queued: 0, more: false }
      )
      assert.deepStrictEqual(yield* replay({ owner_id: uniqueId() }), { queued: 0, more: false })

      // Unroutable events are replayed to the unroutable queue.
      const stranger = uniqueId()
      const lost = yield* sendEach(stranger, 2)
      const rowsL = yield* settledRows(lost)
      const lostIds = rowsL.map((r) => r.event_id)
      const firstCopies = yield* amqp.takeMatching(UNROUTABLE, (m) => lostIds.includes(String(eventIdOf(m))), {
        expected: 2,
        idleMs: 5000
      })
      assert.strictEqual(firstCopies.length, 2)
      assert.deepStrictEqual(yield* replay({ status: "unroutable", owner_id: stranger }), { queued: 2, more: false })
      const secondCopies = yield* amqp.takeMatching(UNROUTABLE, (m) => lostIds.includes(String(eventIdOf(m))), {
        expected: 2,
        idleMs: 5000,
        settleMs: 1000
      })
      assert.deepStrictEqual([...tally(secondCopies)].sort(), lostIds.map((id): [string, Array<unknown>] => [id, [2]]).sort())

      for (
        const body of [
          {},
          { since: "not a time" },
          { until: "yesterday" },
          { status: "bogus" },
          { status: "duplicate" },
          { owner_id: 17 }
        ]
      ) {
        const response = yield* app.request<unknown>("/monitoring/replay", { method: "POST", json: body })
        assert.strictEqual(response.status, 422, `${JSON.stringify(body)}: ${response.text}`)
      }
      yield* quiescent
    }))

  it.effect("replaying twice queues nothing twice: pending events are never queued again", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const sql = yield* SqlClient.SqlClient
      const workerApp = yield* createWorkerApp("replay-twice")
      const events = yield* sendEach(workerApp.owner_id, 4)
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 4 })).length, 4)
      const rows = yield* settledRows(events)
      yield* quiescent

      // Back to back. The second call can only find events the sweeper already delivered again
      // in between (then they are re-queued once more, legitimately); never one still pending.
      const first = yield* replay({ owner_id: workerApp.owner_id })
      const second = yield* replay({ owner_id: workerApp.owner_id })
      assert.deepStrictEqual(first, { queued: 4, more: false })
      assert.isAtLeast(second.queued, 0)
      assert.isAtMost(second.queued, 4)
      const again = yield* amqp.drainQueue(workerApp.queue_name, { expected: 4 + second.queued, settleMs: 1500 })
      assert.strictEqual(again.length, 4 + second.queued)
      const counts = tally(again)
      assert.deepStrictEqual([...counts.keys()].sort(), rows.map((r) => r.event_id).sort())
      const twice = [...counts.values()].filter((attempts) => attempts.length === 2)
      assert.strictEqual(twice.length, second.queued)
      for (const attempts of counts.values()) {
        assert.deepStrictEqual([...attempts].sort(), attempts.length === 1 ? [2] : [2, 3])
      }
      yield* quiescent

      // Deterministically: an event parked as pending (lease far ahead, so the sweeper leaves it)
      // is not queued by a replay of its owner, its id, or its status.
      const parkedOwner = uniqueId()
      const parkedId = "f".repeat(40) + uniqueId().slice(-17).padStart(24, "0")
      assert.match(parkedId, HEX64)
      yield* sql`
        INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, owner_id, status, attempts, value_raw, lease_until)
        VALUES (${parkedId}, now(), 'instagram', 'comments', ${parkedOwner}, ${parkedOwner}, 'pending', 1, '{}', now() + interval '1 hour')
      `.pipe(Effect.orDie)
      yield* Effect.gen(function*() {
        assert.deepStrictEqual(yield* replay({ owner_id: parkedOwner }), { queued: 0, more: false })
        assert.deepStrictEqual(yield* replayOne(parkedId), { queued: 0, more: false })
        assert.deepStrictEqual(yield* replay({ status: "pending" }), { queued: 0, more: false })
        const pending = yield* logs({ status: "pending" })
        assert.deepStrictEqual(pending.items.map((e) => e.event_id), [parkedId])
        const state = yield* sql<{ readonly status: string; readonly attempts: number }>`
          SELECT status, attempts FROM webhook_events WHERE event_id = ${parkedId}
        `.pipe(Effect.orDie)
        assert.deepStrictEqual(state.map((r) => ({ ...r })), [{ status: "pending", attempts: 1 }])
      }).pipe(
        Effect.ensuring(sql`DELETE FROM webhook_events WHERE event_id = ${parkedId}`.pipe(Effect.orDie))
      )
    }))

  it.effect("/monitoring/queues reports each worker app's queue and dead-letter queue, and unroutable", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("queues")
      const deadLetterQueue = `${workerApp.queue_name}.dlq`
      // Two refused by the worker app (dead-lettered by RabbitMQ), then three left waiting.
      yield* sendEach(workerApp.owner_id, 2)
      assert.strictEqual((yield* amqp.rejectMessages(workerApp.queue_name, { expected: 2 })).length, 2)
      yield* eventually(amqp.queueMessageCount(deadLetterQueue), (n) => n === 2)
      const waiting = yield* sendEach(workerApp.owner_id, 3)
      yield* settledRows(waiting)
      yield* eventually(amqp.queueMessageCount(workerApp.queue_name), (n) => n === 3)

      const report = yield* eventually(
        Effect.map(app.request<unknown>("/monitoring/queues"), (r) => decode(QueuesJson)(r.body)),
        (r) => r.items.some((i) => i.worker_app_id === workerApp.id && i.queue?.messages === 3 && i.dead_letter_queue?.messages === 2)
      )
      const item = report.items.find((i) => i.worker_app_id === workerApp.id)
      assert.deepStrictEqual(item, {
        worker_app_id: workerApp.id,
        name: workerApp.queue_name,
        owner_id: workerApp.owner_id,
        is_active: true,
        queue_name: workerApp.queue_name,
        queue: { messages: 3, consumers: 0 },
        dead_letter_queue: { messages: 2, consumers: 0 }
      })
      assert.strictEqual(yield* amqp.queueMessageCount(workerApp.queue_name), 3)
      assert.strictEqual(yield* amqp.queueMessageCount(deadLetterQueue), 2)
      assert.isNull(report.broker_error)
      assert.isNotNull(report.unroutable)
      assert.isAtLeast(report.unroutable?.messages ?? -1, 0)
      // Every worker app of this database is listed, once.
      const listed = report.items.map((i) => i.worker_app_id)
      assert.strictEqual(new Set(listed).size, listed.length)
      const all = yield* app.request<unknown>("/worker-apps/?limit=500")
      const total = decode(Schema.Struct({ total: Schema.Number }))(all.body).total
      assert.strictEqual(listed.length, total)

      // Consumed, the counts follow.
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 3 })).length, 3)
      const drained = yield* eventually(
        Effect.map(app.request<unknown>("/monitoring/queues"), (r) => decode(QueuesJson)(r.body)),
        (r) => r.items.some((i) => i.worker_app_id === workerApp.id && i.queue?.messages === 0)
      )
      assert.deepStrictEqual(
        drained.items.find((i) => i.worker_app_id === workerApp.id)?.queue,
        { messages: 0, consumers: 0 }
      )
    }))
})

// ---------------------------------------------------------------------------------------------
// A journal of 100,000 rows: the webhook-logs queries are index scans, and the endpoint is right.
// ---------------------------------------------------------------------------------------------

const SEEDED = 100_000
const SEEDED_DUPLICATES = 10_000
const SEED_APPS = [0, 1, 2, 3, 4].map((k) => `00000000-0000-4000-8000-00000000000${k}`)
const SEED_STATUSES = [
  "routed",
  "routed",
  "routed",
  "routed",
  "routed",
  "routed",
  "unroutable",
  "unroutable",
  "dead_lettered",
  "ignored"
] as const
// Whole seconds: the service writes millisecond times, and so does the seed.
const seedBase = new Date(Math.floor(Date.now() / 1000) * 1000)

interface SeededRow {
  readonly event_id: string
  readonly at: number
  readonly status: string
  readonly owner_id: string
  readonly worker_app_id: string | null
}

/** Row `i` of the seed, as the INSERT below builds it; two rows share each second, so ties are common. */
const seededRow = (i: number): SeededRow => ({
  event_id: createHash("sha256").update(`seed-${i}`).digest("hex"),
  at: seedBase.getTime() - Math.floor(i / 2) * 1000,
  status: SEED_STATUSES[i % 10]!,
  owner_id: `1789000${i % 100}`,
  worker_app_id: i % 10 < 6 ? SEED_APPS[Math.floor(i / 10) % 5]! : null
})

/** The whole seed, newest first as the service orders it: received_at, then event_id, descending. */
const seededNewestFirst = (): ReadonlyArray<SeededRow> =>
  Array.from({ length: SEEDED }, (_, k) => seededRow(k + 1)).sort((a, b) =>
    a.at !== b.at ? b.at - a.at : a.event_id < b.event_id ? 1 : a.event_id > b.event_id ? -1 : 0
  )

/** Seeds the journal once per database (both tests of the layer need it; either may run alone). */
const seedJournal = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const existing = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie)
  if (existing[0]?.n === SEEDED) return
  const [a0, a1, a2, a3, a4] = SEED_APPS
  yield* sql`
    INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, media_id, owner_id, worker_app_id,
                                status, attempts, value_raw, delivered_at)
    SELECT encode(sha256(convert_to('seed-' || i, 'UTF8')), 'hex'),
           ${seedBase}::timestamptz - make_interval(secs => i / 2),
           'instagram', 'comments', '1789000' || (i % 100), NULL, '1789000' || (i % 100),
           CASE WHEN i % 10 < 6 THEN (CASE (i / 10) % 5
             WHEN 0 THEN ${a0}::uuid WHEN 1 THEN ${a1}::uuid WHEN 2 THEN ${a2}::uuid WHEN 3 THEN ${a3}::uuid
             ELSE ${a4}::uuid END) END,
           (ARRAY['routed', 'routed', 'routed', 'routed', 'routed', 'routed', 'unroutable', 'unroutable',
                  'dead_lettered', 'ignored'])[i % 10 + 1],
           1, jsonb_build_object('id', i::text)::text, ${seedBase}::timestamptz
    FROM generate_series(1, ${SEEDED}) AS i
  `.pipe(Effect.orDie)
  // Meta's redeliveries of some of them, each a little after the event.
  yield* sql`
    INSERT INTO webhook_duplicates (event_id, received_at)
    SELECT encode(sha256(convert_to('seed-' || (j * 7 % ${SEEDED} + 1), 'UTF8')), 'hex'),
           ${seedBase}::timestamptz - make_interval(secs => j / 3) + interval '500 milliseconds'
    FROM generate_series(1, ${SEEDED_DUPLICATES}) AS j
  `.pipe(Effect.orDie)
  yield* sql`ANALYZE webhook_events`.pipe(Effect.orDie)
  yield* sql`ANALYZE webhook_duplicates`.pipe(Effect.orDie)
})

interface PlanNode {
  readonly type: string
  readonly relation: string | undefined
  readonly index: string | undefined
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const planNodes = (node: unknown): ReadonlyArray<PlanNode> => {
  if (!isRecord(node)) return []
  const relation = node["Relation Name"]
  const index = node["Index Name"]
  const children = node["Plans"]
  return [
    {
      type: String(node["Node Type"]),
      relation: typeof relation === "string" ? relation : undefined,
      index: typeof index === "string" ? index : undefined
    },
    ...(Array.isArray(children) ? children.flatMap(planNodes) : [])
  ]
}

interface LogsQuery {
  readonly status?: WebhookLogQuery["status"]
  readonly owner_id?: string
  readonly worker_app_id?: string
  readonly since?: string
  readonly cursor?: readonly [string, string]
}

/**
 * `EXPLAIN (FORMAT JSON)` of the statement `Operations.webhookLogs` runs for this query
 * (`webhookLogSelect`, the same builder), `LIMIT` of the default page + 1.
 */
const explainLogs = (query: LogsQuery, limit = 100) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [text, params] = webhookLogSelect(sql, query, query.cursor, limit).compile()
    const statement = sql.unsafe<{ readonly "QUERY PLAN": unknown }>(`EXPLAIN (FORMAT JSON) ${text}`, params)
    const rows = yield* statement.pipe(Effect.orDie)
    const raw = rows[0]?.["QUERY PLAN"]
    const plan: unknown = typeof raw === "string" ? JSON.parse(raw) : raw
    const top = Array.isArray(plan) ? plan[0] : undefined
    return { nodes: planNodes(isRecord(top) ? top["Plan"] : undefined), text: JSON.stringify(plan) }
  })

layer(
  Layer.mergeAll(JournalDb).pipe(Layer.provideMerge(TestApp.layer("monitoring_plan"))),
  { excludeTestServices: true, timeout: "120 seconds" }
)("webhook logs on a journal of 100,000 rows", (it) => {
  const expected = seededNewestFirst()
  const middle = expected[Math.floor(SEEDED / 2)]!
  const middleCursor = [new Date(middle.at).toISOString(), middle.event_id] as const

  it.effect("every filter's query is an index scan in the journal's order: no Seq Scan, no Sort", () =>
    Effect.gen(function*() {
      yield* seedJournal
      const sql = yield* SqlClient.SqlClient
      const count = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie)
      assert.strictEqual(count[0]?.n, SEEDED)

      const queries: ReadonlyArray<LogsQuery> = [
        {},
        { status: "routed" },
        { status: "unroutable" },
        { status: "dead_lettered" },
        { status: "ignored" },
        { status: "pending" },
        { owner_id: "178900042" },
        { worker_app_id: SEED_APPS[3]! },
        { since: new Date(seedBase.getTime() - 600_000).toISOString() },
        { cursor: middleCursor },
        { status: "unroutable", cursor: middleCursor },
        { owner_id: "178900042", cursor: middleCursor },
        { worker_app_id: SEED_APPS[3]!, cursor: middleCursor },
        { status: "routed", owner_id: "17890007" },
        { status: "duplicate" },
        { status: "duplicate", cursor: [new Date(seedBase.getTime() - 1_000_000).toISOString(), "5000"] },
        { status: "duplicate", owner_id: "178900042" }
      ]
      for (const query of queries) {
        const { nodes, text } = yield* explainLogs(query)
        const label = `${JSON.stringify(query)}: ${text}`
        assert.isFalse(
          nodes.some((n) => n.type === "Seq Scan" && n.relation === "webhook_events"),
          `a Seq Scan of webhook_events in ${label}`
        )
        assert.isTrue(
          nodes.some((n) =>
            (n.relation === "webhook_events" && (n.type === "Index Scan" || n.type === "Index Only Scan")) ||
            (n.type === "Bitmap Index Scan" && (n.index ?? "").startsWith("webhook_events_"))
          ),
          `no index scan of webhook_events in ${label}`
        )
        const filtersEvents = query.owner_id !== undefined || query.worker_app_id !== undefined
        if (query.status === "pending") {
          // No pending rows: the planner may read an (empty) partial index of pending rows and sort nothing.
          assert.isTrue(
            nodes.some((n) =>
              n.index === "webhook_events_pending_idx" || n.index === "webhook_events_pending_key_idx" ||
              n.index === "webhook_events_status_idx"
            ),
            `pending rows not read by an index of theirs in ${label}`
          )
        } else if (query.status !== "duplicate") {
          // The index hands rows over in the page's order: the LIMIT stops the scan early.
          assert.isFalse(nodes.some((n) => n.type === "Sort" || n.type === "Incremental Sort"), `a Sort in ${label}`)
        } else if (!filtersEvents) {
          assert.isFalse(nodes.some((n) => n.type === "Seq Scan"), `a Seq Scan in ${label}`)
          assert.isFalse(nodes.some((n) => n.type === "Sort" || n.type === "Incremental Sort"), `a Sort in ${label}`)
          assert.isTrue(
            nodes.some((n) => n.relation === "webhook_duplicates" && n.index === "webhook_duplicates_received_idx"),
            `duplicates not read in order by their index in ${label}`
          )
        }
      }
    }))

  it.effect("the endpoint gives the right rows for each filter, and the cursor walks all 100,000 once", () =>
    Effect.gen(function*() {
      yield* seedJournal
      const ids = (rows: ReadonlyArray<{ readonly event_id: string }>) => rows.map((r) => r.event_id)
      const cases: ReadonlyArray<readonly [Record<string, string>, (row: SeededRow) => boolean, number]> = [
        [{}, () => true, 2],
        [{ status: "routed" }, (r) => r.status === "routed", 2],
        [{ status: "unroutable" }, (r) => r.status === "unroutable", 2],
        [{ status: "dead_lettered" }, (r) => r.status === "dead_lettered", 2],
        [{ status: "ignored" }, (r) => r.status === "ignored", 2],
        [{ status: "pending" }, (r) => r.status === "pending", 1],
        [{ owner_id: "178900042" }, (r) => r.owner_id === "178900042", 3],
        [{ worker_app_id: SEED_APPS[3]! }, (r) => r.worker_app_id === SEED_APPS[3], 2],
        [{ status: "unroutable", owner_id: "17890007" }, (r) => r.status === "unroutable" && r.owner_id === "17890007", 3],
        [
          { since: new Date(seedBase.getTime() - 600_000).toISOString() },
          (r) => r.at >= seedBase.getTime() - 600_000,
          4
        ]
      ]
      for (const [query, keep, pagesToRead] of cases) {
        const want = expected.filter(keep)
        const got: Array<LogEntry> = []
        let cursor: string | null = null
        for (let page = 0; page < pagesToRead; page++) {
          const response: LogPage = yield* logs(cursor === null ? { ...query, limit: "500" } : { ...query, limit: "500", cursor })
          got.push(...response.items)
          cursor = response.next_cursor
          if (cursor === null) break
        }
        const label = JSON.stringify(query)
        assert.deepStrictEqual(ids(got), ids(want.slice(0, got.length)), label)
        assert.strictEqual(got.length, Math.min(want.length, pagesToRead * 500), label)
        assert.strictEqual(cursor === null, want.length <= got.length, `${label}: next_cursor at the end`)
        const first = got[0]
        const wantFirst = want[0]
        if (wantFirst !== undefined) {
          assert.deepInclude(first, {
            event_id: wantFirst.event_id,
            received_at: new Date(wantFirst.at).toISOString(),
            status: wantFirst.status,
            owner_id: wantFirst.owner_id,
            worker_app_id: wantFirst.worker_app_id
          }, label)
        }
      }

      // All 100,000, 500 at a time: each exactly once, in order, and the cursor ends.
      const walked = yield* allPages({ limit: "500" })
      assert.strictEqual(walked.length, SEEDED / 500)
      assert.isNull(walked[walked.length - 1]!.next_cursor)
      const all = walked.flatMap((p) => ids(p.items))
      assert.strictEqual(new Set(all).size, SEEDED)
      assert.deepStrictEqual(all, ids(expected))

      // Duplicates: newest first by arrival, paged without overlap.
      const duplicates = yield* allPages({ status: "duplicate", limit: "500", since: new Date(seedBase.getTime() - 600_000).toISOString() })
      const items = duplicates.flatMap((p) => p.items)
      // Redelivery j arrives at base - floor(j / 3) s + 0.5 s: those with floor(j / 3) <= 600 are in.
      const inWindow = Array.from({ length: SEEDED_DUPLICATES }, (_, k) => k + 1).filter((j) => Math.floor(j / 3) <= 600)
      assert.strictEqual(items.length, inWindow.length)
      assert.isTrue(items.every((e) => e.status === "duplicate"))
      assertNewestFirst(items, false)
    }))
})

// ---------------------------------------------------------------------------------------------
// Retention: a second instance with a one-hour JOURNAL_RETENTION, started against the journal,
// deletes finished events and duplicates older than that at start-up, in batches, and nothing else.
// ---------------------------------------------------------------------------------------------

layer(
  Layer.mergeAll(JournalDb).pipe(Layer.provideMerge(TestApp.layer("monitoring_retention"))),
  { excludeTestServices: true, timeout: "60 seconds" }
)("journal retention", (it) => {
  it.effect("deletes finished events and duplicates older than JOURNAL_RETENTION, keeps pending and recent ones", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const sql = yield* SqlClient.SqlClient
      // 2,500 old finished events (more than one deletion batch), 3 old but pending (leased far ahead,
      // so the sweeper leaves them), 10 finished 50 minutes ago; 1,500 old duplicates and 5 recent ones.
      yield* sql`
        INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, owner_id, status, attempts,
                                    value_raw, delivered_at, lease_until)
        SELECT encode(sha256(convert_to(kind || '-' || i, 'UTF8')), 'hex'),
               now() - CASE WHEN kind = 'recent' THEN interval '50 minutes' ELSE interval '2 hours' END
                     - make_interval(secs => i),
               'instagram', 'comments', '17890001', '17890001',
               CASE WHEN kind = 'pending' THEN 'pending'
                    ELSE (ARRAY['routed', 'unroutable', 'dead_lettered', 'ignored'])[i % 4 + 1] END,
               1, '{}',
               CASE WHEN kind = 'pending' THEN NULL ELSE now() END,
               CASE WHEN kind = 'pending' THEN now() + interval '1 hour' END
        FROM (VALUES ('old', 2500), ('pending', 3), ('recent', 10)) AS k(kind, n), generate_series(1, n) AS i
      `.pipe(Effect.orDie)
      yield* sql`
        INSERT INTO webhook_duplicates (event_id, received_at)
        SELECT encode(sha256(convert_to('old-' || i, 'UTF8')), 'hex'),
               now() - CASE WHEN i <= 1500 THEN interval '2 hours' ELSE interval '50 minutes' END
        FROM generate_series(1, 1505) AS i
      `.pipe(Effect.orDie)

      const counts = sql<{
        readonly old_finished: number
        readonly old_pending: number
        readonly recent: number
        readonly old_duplicates: number
        readonly recent_duplicates: number
      }>`
        SELECT
          (SELECT count(*)::int FROM webhook_events WHERE received_at < now() - interval '1 hour' AND status <> 'pending') AS old_finished,
          (SELECT count(*)::int FROM webhook_events WHERE received_at < now() - interval '1 hour' AND status = 'pending') AS old_pending,
          (SELECT count(*)::int FROM webhook_events WHERE received_at >= now() - interval '1 hour') AS recent,
          (SELECT count(*)::int FROM webhook_duplicates WHERE received_at < now() - interval '1 hour') AS old_duplicates,
          (SELECT count(*)::int FROM webhook_duplicates WHERE received_at >= now() - interval '1 hour') AS recent_duplicates
      `.pipe(Effect.orDie, Effect.map((rows) => ({ ...rows[0] })))

      // Seeded as meant (the running instance keeps 7 days, and its retention ran at its start).
      assert.deepStrictEqual(yield* counts, {
        old_finished: 2500,
        old_pending: 3,
        recent: 10,
        old_duplicates: 1500,
        recent_duplicates: 5
      })

      yield* Effect.scoped(Effect.gen(function*() {
        // Fresh: none of the running instance's layers are shared with this one.
        yield* Layer.build(Layer.fresh(AppNoConfig.pipe(
          Layer.provide(AppConfig.layerWith(testConfig(`postgres://postgres@127.0.0.1:5432/${app.database}`, {
            journalRetention: Duration.hours(1)
          })))
        )))
        const after = yield* eventually(counts, (c) => c.old_finished === 0 && c.old_duplicates === 0)
        assert.deepStrictEqual(after, {
          old_finished: 0,
          old_pending: 3,
          recent: 10,
          old_duplicates: 0,
          recent_duplicates: 5
        })
      }))
    }))
})
