import { assert } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { type ReplayFilter, type WebhookLogEntry, WebhookLogPage } from "../../src/domain/WebhookLog.ts"
import { AdminClient, answered } from "./AdminClient.ts"
import { Amqp, type ReceivedMessage } from "./Amqp.ts"
import { JournalDb, TestApp } from "./TestApp.ts"
import { commentEvent, postWebhook, type SentEvent, webhookText } from "./Webhooks.ts"
import { eventually } from "./WorkerApps.ts"

// ---------------------------------------------------------------------------------------------
// Fixtures: the service, its own database (read and written directly) and RabbitMQ with the test
// file's queue prefix. `chatico.unroutable` is shared with other files: only our own messages
// are ever taken from it.
// ---------------------------------------------------------------------------------------------


export const environment = (name: string) =>
  Layer.mergeAll(JournalDb, Amqp.layer(name)).pipe(Layer.provideMerge(TestApp.layer(name)))

export const UNROUTABLE = "chatico.unroutable"
export const HEX64 = /^[0-9a-f]{64}$/

export type LogPage = typeof WebhookLogPage.Type
type Client = Effect.Success<typeof AdminClient>
export type LogsQuery = Parameters<Client["monitoring"]["webhookLogs"]>[0]["query"]

/** The pipeline check's detail (the contract leaves a check's detail open). */
export const PipelineDetail = Schema.Struct({ journal_mailbox: Schema.Number, delivery_mailbox: Schema.Number, in_flight: Schema.Number })
/** `/monitoring/metrics` entries (the contract leaves their shape open). */
export const MetricsJson = Schema.Record(
  Schema.String,
  Schema.Array(Schema.Struct({
    attributes: Schema.Record(Schema.String, Schema.String),
    count: Schema.optional(Schema.Number),
    sum: Schema.optional(Schema.Number),
    value: Schema.optional(Schema.Number)
  }))
)
export type MetricEntry = (typeof MetricsJson.Type)[string][number]

export const decode = Schema.decodeUnknownSync

/** POSTs one signed webhook of these entries and expects it accepted. */
export const send = (entries: ReadonlyArray<ReadonlyArray<SentEvent>>, object = "instagram") =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const response = yield* postWebhook(app, webhookText(entries, { object }))
    assert.strictEqual(response.status, 200, response.text)
  })

/** `n` comments on one owner's media, one webhook each (so each has its own `received_at`). */
export const sendEach = (ownerId: string, n: number) =>
  Effect.gen(function*() {
    const events = Array.from({ length: n }, () => commentEvent(ownerId))
    for (const event of events) {
      yield* send([[event]])
      // Distinct arrival milliseconds, so `since`/`until` can fall between them.
      yield* Effect.sleep("3 millis")
    }
    return events
  })

export interface JournalRow {
  readonly event_id: string
  readonly value_raw: string
  readonly status: string
  readonly attempts: number
  readonly received_at: Date
}

export const rowsOf = (events: ReadonlyArray<SentEvent>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<JournalRow>`
      SELECT event_id, value_raw, status, attempts, received_at FROM webhook_events
      WHERE value_raw IN ${sql.in(events.map((e) => e.valueRaw))}
    `.pipe(Effect.orDie)
  })

/** The journal rows of these events once none is pending, in the order of `events`. */
export const settledRows = (events: ReadonlyArray<SentEvent>) =>
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
export const livePending = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly n: number }>`
    SELECT count(*)::int AS n FROM webhook_events
    WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now() + interval '10 minutes')
  `.pipe(Effect.orDie)
  return rows[0]?.n ?? -1
})

/** Waits until nothing is pending, in a mailbox or in flight: every outcome is counted and recorded. */
export const quiescent = Effect.gen(function*() {
  const client = yield* AdminClient
  const state = Effect.gen(function*() {
    const health = yield* client.health.health()
    const detail = decode(PipelineDetail)(health.checks["pipeline"]?.detail)
    return { ...detail, pending: yield* livePending }
  })
  const last = yield* eventually(
    state,
    (s) => s.pending === 0 && s.journal_mailbox === 0 && s.delivery_mailbox === 0 && s.in_flight === 0
  )
  assert.deepStrictEqual(last, { journal_mailbox: 0, delivery_mailbox: 0, in_flight: 0, pending: 0 })
})

export const logs = (query: LogsQuery) =>
  Effect.gen(function*() {
    const client = yield* AdminClient
    const response = yield* answered(client.monitoring.webhookLogs({ query }))
    assert.strictEqual(response.status, 200, JSON.stringify(query))
    return response.body
  })

/** Every page of a listing, following `next_cursor` until it is null. */
export const allPages = (query: LogsQuery) =>
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
export const assertNewestFirst = (items: ReadonlyArray<WebhookLogEntry>, tieByEventId = true) => {
  for (let i = 1; i < items.length; i++) {
    const a = items[i - 1]!
    const b = items[i]!
    const ta = Date.parse(a.received_at)
    const tb = Date.parse(b.received_at)
    assert.isAtLeast(ta, tb, `item ${i} is newer than item ${i - 1}`)
    if (tieByEventId && ta === tb) assert.isTrue(a.event_id > b.event_id, `tie at ${a.received_at} not by event_id`)
  }
}

export const replay = (filter: ReplayFilter) =>
  Effect.gen(function*() {
    const client = yield* AdminClient
    const response = yield* answered(client.monitoring.replay({ payload: filter }))
    assert.strictEqual(response.status, 200, JSON.stringify(filter))
    return response.body
  })

export const replayOne = (eventId: string) =>
  Effect.gen(function*() {
    const client = yield* AdminClient
    const response = yield* answered(client.monitoring.replayOne({ params: { event_id: eventId } }))
    assert.strictEqual(response.status, 200)
    return response.body
  })

export const attemptOf = (message: ReceivedMessage): unknown => message.properties.headers?.["x-attempt"]
export const eventIdOf = (message: ReceivedMessage): unknown => message.properties.messageId

/** Message ids with how many times each arrived and the `x-attempt`s they came with. */
export const tally = (messages: ReadonlyArray<ReceivedMessage>) => {
  const byId = new Map<string, Array<unknown>>()
  for (const message of messages) {
    const id = String(eventIdOf(message))
    byId.set(id, [...(byId.get(id) ?? []), attemptOf(message)])
  }
  return byId
}

/** Checks a message is the event's: same id in the body and the properties. */
export const assertMessageOf = (message: ReceivedMessage, eventId: string, attempt: number) => {
  assert.strictEqual(eventIdOf(message), eventId)
  const body: unknown = JSON.parse(message.text)
  assert.deepInclude(decode(Schema.Struct({ event_id: Schema.String }))(body), { event_id: eventId })
  assert.strictEqual(attemptOf(message), attempt, `x-attempt of ${eventId}`)
}

export const metricsText = Effect.gen(function*() {
  const app = yield* TestApp
  const response = yield* app.request<unknown>("/metrics")
  assert.strictEqual(response.status, 200, response.text)
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/)
  return response.text
})

export const metricsJson = Effect.gen(function*() {
  const client = yield* AdminClient
  const response = yield* answered(client.monitoring.metricsJson())
  assert.strictEqual(response.status, 200)
  return decode(MetricsJson)(response.body)
})
