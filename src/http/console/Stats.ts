import { Clock, Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { DatabaseUnavailable } from "../../domain/Errors.ts"
import { Database } from "../../services/Database.ts"
import {
  backlogSelect,
  duplicatesPerMinute,
  eventsPerMinute,
  rawValueSelect,
  routedPerApp
} from "../../services/JournalReads.ts"

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
