import { Context, Duration, Effect, Layer, Schema } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { DatabaseUnavailable } from "../domain/Errors.ts"
import {
  EventNotFound,
  type EventStatus,
  InvalidFilter,
  isIsoTime,
  type ReplayFilter,
  WebhookLogEntry,
  WebhookLogEvent
} from "../domain/WebhookLog.ts"
import { Database } from "./Database.ts"
import {
  type EventRow,
  eventExists,
  eventSelect,
  type LogRow,
  pendingBacklogSelect,
  pendingCountSelect,
  replayConditions,
  replayCount,
  replayUpdate,
  webhookLogSelect,
  type WebhookLogQuery
} from "./JournalReads.ts"
import { AppConfig } from "./AppConfig.ts"
import { Broker, deadLetterQueue } from "./Broker.ts"
import { Lanes } from "./Lanes.ts"
import { traceFromJournal } from "./TraceContext.ts"
import { WorkerApps } from "./WorkerApps.ts"

/** Events one replay call re-queues at most; `more: true` says there are others. */
export const REPLAY_MAX = 10_000
export const DEFAULT_LOG_PAGE = 100
export type { WebhookLogQuery } from "./JournalReads.ts"

/** Worker apps per /monitoring/queues page unless `?limit=` says otherwise. */
export const DEFAULT_QUEUES_PAGE = 100
/** Passive declares in flight at once for one /monitoring/queues call. */
export const QUEUE_COUNT_CONCURRENCY = 8

const iso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString()

const entryFields = (row: LogRow) => ({
    event_id: row.event_id,
    received_at: iso(row.received_at),
    status: row.status,
    object: row.object,
    field: row.field,
    entry_id: row.entry_id,
    media_id: row.media_id,
    owner_id: row.owner_id,
    worker_app_id: row.worker_app_id,
    attempts: row.attempts,
    last_error: row.last_error,
    delivered_at: row.delivered_at === null ? null : iso(row.delivered_at),
    // Derived from value_raw as the page is read (null when Postgres cannot hold it as jsonb); the
    // driver has already parsed the jsonb: a value that is a JSON string stays that string.
    value: row.value,
    routing_note: row.routing_note
  })

const toEntry = (row: LogRow) => new WebhookLogEntry(entryFields(row))

const toEvent = (row: EventRow) =>
  new WebhookLogEvent({
    ...entryFields(row),
    entry_time: row.entry_time === null ? null : Number(row.entry_time),
    duplicates: Number(row.duplicates),
    trace_id: traceFromJournal(row.trace_context)?.span.traceId ?? null
  })

// The cursor is the (received_at, key) of the last row of a page, opaque to callers.
const encodeCursor = (receivedAt: Date | string, key: string) =>
  Buffer.from(JSON.stringify([iso(receivedAt), key])).toString("base64url")

// A cursor's key is an event id (64 hex) or, on a duplicates page, a row number.
const CURSOR_KEY = { events: /^[0-9a-f]{64}$/, duplicates: /^\d{1,18}$/ } as const

const decodeCursor = (cursor: string, key: RegExp): readonly [string, string] | undefined => {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    if (
      Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === "string" && typeof parsed[1] === "string" &&
      isIsoTime(parsed[0]) && key.test(parsed[1])
    ) return [parsed[0], parsed[1]]
  } catch {
    // Falls through to "invalid".
  }
  return undefined
}

const toPage = (rows: ReadonlyArray<LogRow>, limit: number) => {
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return {
    items: page.map(toEntry),
    next_cursor: rows.length > limit && last !== undefined ? encodeCursor(last.received_at, String(last.seq)) : null
  }
}

const unavailable = (_: SqlError.SqlError | DatabaseUnavailable) =>
  new DatabaseUnavailable({ detail: "the database is unavailable" })

/** Why an operator's request failed: no such event, a filter the journal cannot take, or the database away. */
export class OperationsError extends Schema.TaggedError<OperationsError>()("OperationsError", {
  reason: Schema.Union([EventNotFound, InvalidFilter, DatabaseUnavailable])
}) {
  override get message() {
    return `${this.reason._tag}: ${this.reason.detail}`
  }
}

type OperationsReason = OperationsError["reason"]

/** A call's own reasons as its errors (those the API declares for it); any other would be a bug, a defect. */
export const reasons = <const Tags extends ReadonlyArray<OperationsReason["_tag"]>>(...tags: Tags) =>
<A, R>(effect: Effect.Effect<A, OperationsError, R>): Effect.Effect<A, Extract<OperationsReason, { readonly _tag: Tags[number] }>, R> =>
  Effect.catch(effect, (error) =>
    tags.includes(error.reason._tag)
      ? Effect.fail(error.reason as Extract<OperationsReason, { readonly _tag: Tags[number] }>)
      : Effect.die(error))

const wrap = <A, R>(effect: Effect.Effect<A, EventNotFound | InvalidFilter | DatabaseUnavailable, R>) =>
  Effect.mapError(effect, (reason) => new OperationsError({ reason }))

/** What operators ask of the journal and the broker: webhook logs, replay, queue depths. */
export class Operations extends Context.Service<Operations, {
  webhookLogs(query: WebhookLogQuery): Effect.Effect<
    { readonly items: ReadonlyArray<WebhookLogEntry>; readonly next_cursor: string | null },
    OperationsError
  >
  webhookLog(eventId: string): Effect.Effect<WebhookLogEvent, OperationsError>
  replayOne(eventId: string): Effect.Effect<{ readonly queued: number; readonly more: boolean }, OperationsError>
  replay(filter: ReplayFilter): Effect.Effect<{ readonly queued: number; readonly more: boolean }, OperationsError>
  queues(page: { readonly limit: number; readonly offset: number }): Effect.Effect<{
    readonly items: ReadonlyArray<{
      readonly worker_app_id: string
      readonly name: string
      readonly owner_id: string
      readonly is_active: boolean
      readonly queue_name: string
      readonly queue: { readonly messages: number; readonly consumers: number } | null
      readonly dead_letter_queue: { readonly messages: number; readonly consumers: number } | null
    }>
    readonly total: number
    readonly unroutable: { readonly messages: number; readonly consumers: number } | null
    readonly broker_error: string | null
  }, OperationsError>
  readonly pendingCount: Effect.Effect<number, OperationsError>
  /** How many events are pending and how long the oldest has waited, in seconds (null when none is). */
  readonly pendingBacklog: Effect.Effect<{ readonly pending: number; readonly oldestSeconds: number | null }, OperationsError>
}>()("chatico/services/Operations") {
  static readonly layer = Layer.effect(
    Operations,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const database = yield* Database
      const broker = yield* Broker
      const workerApps = yield* WorkerApps
      const lanes = yield* Lanes
      const { unroutableQueue, deliveryLease } = yield* AppConfig
      const leaseSeconds = Duration.toSeconds(deliveryLease)
      const ready = database.ready.pipe(Effect.mapError(unavailable))

      const webhookLogs = Effect.fn("Operations.webhookLogs")(function*(query: WebhookLogQuery) {
        yield* ready
        const key = query.status === "duplicate" ? CURSOR_KEY.duplicates : CURSOR_KEY.events
        const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor, key)
        if (query.cursor !== undefined && cursor === undefined) {
          return yield* InvalidFilter.at(["query", "cursor"], "cursor is not one this service issued")
        }
        const limit = query.limit
        if (query.status === "duplicate") {
          // A duplicates page's cursor key is the row's sequence number.
          if (cursor !== undefined && !/^\d{1,18}$/.test(cursor[1])) {
            return yield* InvalidFilter.at(["query", "cursor"], "cursor is not one this service issued")
          }
        }
        const rows = yield* webhookLogSelect(sql, query, cursor, limit).pipe(Effect.mapError(unavailable))
        return toPage(rows, limit)
      })

      const webhookLog = Effect.fn("Operations.webhookLog")(function*(eventId: string) {
        yield* ready
        const rows = yield* eventSelect(sql, eventId).pipe(Effect.mapError(unavailable))
        const row = rows[0]
        if (row === undefined) return yield* new EventNotFound({ detail: `no event ${eventId}` })
        return toEvent(row)
      })

      // A replayed event goes back to `pending`, held by this instance, and its key is read back
      // from the journal into the lanes at once, in journal order (same event_id, `x-attempt` one
      // higher). Events already pending are left alone, so a second call queues nothing twice.
      const replayWhere = (where: ReturnType<typeof sql.and>) =>
        replayUpdate(sql, where, { instanceId: lanes.instanceId, leaseSeconds, max: REPLAY_MAX }).pipe(
          Effect.mapError(unavailable),
          Effect.tap((rows) => lanes.backlog(new Set(rows.map((row) => row.entry_id)))),
          Effect.map((rows) => ({
            queued: rows.length,
            more: Number(rows[0]?.matched ?? 0) > REPLAY_MAX
          }))
        )

      const replayOne = Effect.fn("Operations.replayOne")(function*(eventId: string) {
        yield* ready
        const exists = yield* eventExists(sql, eventId).pipe(Effect.mapError(unavailable))
        if (exists.length === 0) return yield* new EventNotFound({ detail: `no event ${eventId}` })
        return yield* replayWhere(sql.and([sql`event_id = ${eventId}`]))
      })

      // A dry run counts the rows the replay would take (up to one more than a call queues).
      const countWhere = (where: ReturnType<typeof sql.and>) =>
        replayCount(sql, where, REPLAY_MAX).pipe(
          Effect.map((rows) => {
            const matched = Number(rows[0]?.matched ?? 0)
            return { queued: Math.min(matched, REPLAY_MAX), more: matched > REPLAY_MAX }
          }),
          Effect.mapError(unavailable)
        )

      const replay = Effect.fn("Operations.replay")(function*(filter: ReplayFilter) {
        yield* ready
        const conditions = replayConditions(sql, filter)
        if (conditions.length === 0) {
          return yield* InvalidFilter.at(["body"], "give at least one of status, owner_id, worker_app_id, since, until")
        }
        const where = sql.and(conditions)
        return yield* filter.dry_run === true ? countWhere(where) : replayWhere(where)
      })

      const counts = (queue: string) =>
        broker.queueCounts(queue).pipe(Effect.map((c) => c ?? null), Effect.orElseSucceed(() => null))

      // One page of worker apps: at most 2 × limit + 1 passive declares per call, QUEUE_COUNT_CONCURRENCY at a time.
      const queues = Effect.fn("Operations.queues")(function*(page: { readonly limit: number; readonly offset: number }) {
        const { items: apps, total } = yield* workerApps.list(page).pipe(
          Effect.timeout("5 seconds"),
          Effect.mapError(() => new DatabaseUnavailable({ detail: "the database is unavailable" }))
        )
        const status = yield* broker.status
        const items = yield* Effect.forEach(apps, (app) =>
          Effect.all({ queue: counts(app.queue_name), dead: counts(deadLetterQueue(app.queue_name)) }).pipe(
            Effect.map(({ queue, dead }) => ({
              worker_app_id: app.id,
              name: app.name,
              owner_id: app.owner_id,
              is_active: app.is_active,
              queue_name: app.queue_name,
              queue,
              dead_letter_queue: dead
            }))
          ), { concurrency: QUEUE_COUNT_CONCURRENCY })
        return {
          items,
          total,
          unroutable: yield* counts(unroutableQueue),
          broker_error: status.connected ? null : status.error ?? "not connected"
        }
      })

      const pendingCount = pendingCountSelect(sql).pipe(Effect.map((rows) => Number(rows[0]?.n ?? 0)), Effect.mapError(unavailable))

      const pendingBacklog = pendingBacklogSelect(sql).pipe(
        Effect.map((rows) => ({
          pending: Number(rows[0]?.n ?? 0),
          oldestSeconds: rows[0]?.oldest === null || rows[0]?.oldest === undefined ? null : Number(rows[0].oldest)
        })),
        Effect.mapError(unavailable)
      )

      return Operations.of({
        webhookLogs: (query) => wrap(webhookLogs(query)),
        webhookLog: (eventId) => wrap(webhookLog(eventId)),
        replayOne: (eventId) => wrap(replayOne(eventId)),
        replay: (filter) => wrap(replay(filter)),
        queues: (page) => wrap(queues(page)),
        pendingCount: wrap(pendingCount),
        pendingBacklog: wrap(pendingBacklog)
      })
    })
  )
}
