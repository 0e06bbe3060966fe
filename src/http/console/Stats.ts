import { Clock, Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { DatabaseUnavailable } from "../../domain/Errors.ts"
import { Database } from "../../services/Database.ts"

/** The chart's window: the last hour, one bar group per minute. */
export const CHART_MINUTES = 60
export const OUTCOMES = ["routed", "unroutable", "dead_lettered", "duplicate", "pending"] as const
export type Outcome = typeof OUTCOMES[number]

export interface MinuteCounts {
  /** The minute's start, in seconds since the epoch. */
  readonly minute: number
  readonly counts: Readonly<Record<Outcome, number>>
}

export interface Backlog {
  readonly pending: number
  readonly oldest: Date | null
}


// Each statement is exported so the tests EXPLAIN the very SQL the console runs on a big journal.
// Every one walks an index range bounded by the window (or the pending rows), never the whole table.

export const eventsPerMinute = (sql: SqlClient.SqlClient, since: Date) =>
  sql<{ readonly minute: Date | string; readonly status: string; readonly n: number | string }>`
    SELECT date_trunc('minute', received_at) AS minute, status, count(*)::int AS n
    FROM webhook_events WHERE received_at >= ${since}
    GROUP BY 1, 2
  `

export const duplicatesPerMinute = (sql: SqlClient.SqlClient, since: Date) =>
  sql<{ readonly minute: Date | string; readonly n: number | string }>`
    SELECT date_trunc('minute', received_at) AS minute, count(*)::int AS n
    FROM webhook_duplicates WHERE received_at >= ${since}
    GROUP BY 1
  `

export const backlogSelect = (sql: SqlClient.SqlClient) =>
  sql<{ readonly pending: number | string; readonly oldest: Date | string | null }>`
    SELECT count(*)::int AS pending, min(received_at) AS oldest FROM webhook_events WHERE status = 'pending'
  `

export const routedPerApp = (sql: SqlClient.SqlClient, since: Date) =>
  sql<{ readonly worker_app_id: string; readonly n: number | string }>`
    SELECT worker_app_id::text AS worker_app_id, count(*)::int AS n
    FROM webhook_events WHERE status = 'routed' AND received_at >= ${since}
    GROUP BY 1
  `

/** The value's exact bytes as Meta sent them (what the worker app receives). */
export const rawValueSelect = (sql: SqlClient.SqlClient, eventId: string) =>
  sql<{ readonly value_raw: string }>`SELECT value_raw FROM webhook_events WHERE event_id = ${eventId}`

const isOutcome = (status: string): status is Outcome => OUTCOMES.some((outcome) => outcome === status)

const toSeconds = (value: Date | string) => Math.floor((value instanceof Date ? value : new Date(value)).getTime() / 1000)

const unavailable = () => new DatabaseUnavailable({ detail: "the database is unavailable" })

/** The console overview's counts, read from the journal. */
export class ConsoleStats extends Context.Service<ConsoleStats, {
  readonly throughput: Effect.Effect<ReadonlyArray<MinuteCounts>, DatabaseUnavailable>
  readonly backlog: Effect.Effect<Backlog, DatabaseUnavailable>
  readonly routedLastHour: Effect.Effect<ReadonlyMap<string, number>, DatabaseUnavailable>
  rawValue(eventId: string): Effect.Effect<string | undefined, DatabaseUnavailable>
}>()("chatico/http/console/ConsoleStats") {
  static readonly layer = Layer.effect(
    ConsoleStats,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const database = yield* Database
      const ready = database.ready.pipe(Effect.mapError(unavailable))
      const windowStart = Effect.map(
        Clock.currentTimeMillis,
        (now) => new Date(Math.floor(now / 60_000) * 60_000 - (CHART_MINUTES - 1) * 60_000)
      )

      const throughput = Effect.gen(function*() {
        yield* ready
        const since = yield* windowStart
        const [events, duplicates] = yield* Effect.all([eventsPerMinute(sql, since), duplicatesPerMinute(sql, since)], {
          concurrency: 2
        }).pipe(Effect.mapError(unavailable))
        // Every minute of the window is there, empty ones included, so the chart's time axis is even.
        const minutes = Array.from({ length: CHART_MINUTES }, (_, i) => toSeconds(since) + i * 60)
        const table = new Map(minutes.map((minute) => [minute, { routed: 0, unroutable: 0, dead_lettered: 0, duplicate: 0, pending: 0 }]))
        for (const row of events) {
          const counts = table.get(toSeconds(row.minute))
          if (counts !== undefined && isOutcome(row.status)) counts[row.status] += Number(row.n)
        }
        for (const row of duplicates) {
          const counts = table.get(toSeconds(row.minute))
          if (counts !== undefined) counts.duplicate += Number(row.n)
        }
        return [...table].map(([minute, counts]) => ({ minute, counts }))
      }).pipe(Effect.withSpan("ConsoleStats.throughput"))

      const backlog = Effect.gen(function*() {
        yield* ready
        const rows = yield* backlogSelect(sql).pipe(Effect.mapError(unavailable))
        const row = rows[0]
        return {
          pending: Number(row?.pending ?? 0),
          oldest: row?.oldest === null || row?.oldest === undefined ? null : new Date(row.oldest)
        }
      }).pipe(Effect.withSpan("ConsoleStats.backlog"))

      const routedLastHour = Effect.gen(function*() {
        yield* ready
        const rows = yield* routedPerApp(sql, yield* windowStart).pipe(Effect.mapError(unavailable))
        return new Map(rows.map((row) => [row.worker_app_id, Number(row.n)]))
      }).pipe(Effect.withSpan("ConsoleStats.routedLastHour"))

      const rawValue = Effect.fn("ConsoleStats.rawValue")(function*(eventId: string) {
        yield* ready
        const rows = yield* rawValueSelect(sql, eventId).pipe(Effect.mapError(unavailable))
        return rows[0]?.value_raw
      })

      return ConsoleStats.of({ throughput, backlog, routedLastHour, rawValue })
    })
  )
}
