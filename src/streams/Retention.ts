import { Duration, Effect, Layer, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"

/** Rows deleted per statement, so retention never holds long locks. */
export const RETENTION_BATCH = 1000
export const RETENTION_INTERVAL = Duration.minutes(10)

/**
 * Keeps the journal bounded: finished events (and recorded duplicates) older
 * than `JOURNAL_RETENTION` are deleted in small batches. Pending events are
 * never deleted.
 */
export const RetentionLive = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const database = yield* Database
  const { journalRetention } = yield* AppConfig
  const seconds = Duration.toSeconds(journalRetention)

  const deleteBatch = sql<{ readonly n: number | string }>`
    WITH old AS (
      SELECT event_id FROM webhook_events
      WHERE received_at < now() - make_interval(secs => ${seconds})
        AND status IN ('routed', 'unroutable', 'dead_lettered', 'ignored', 'invalid')
      LIMIT ${RETENTION_BATCH}
    ), gone AS (DELETE FROM webhook_events w USING old WHERE w.event_id = old.event_id RETURNING 1)
    SELECT count(*)::int AS n FROM gone
  `
  const deleteDuplicates = sql<{ readonly n: number | string }>`
    WITH old AS (
      SELECT id FROM webhook_duplicates WHERE received_at < now() - make_interval(secs => ${seconds}) LIMIT ${RETENTION_BATCH}
    ), gone AS (DELETE FROM webhook_duplicates d USING old WHERE d.id = old.id RETURNING 1)
    SELECT count(*)::int AS n FROM gone
  `

  const drain = (statement: typeof deleteBatch) =>
    Effect.gen(function*() {
      let total = 0
      while (true) {
        const deleted = Number((yield* statement)[0]?.n ?? 0)
        total += deleted
        if (deleted < RETENTION_BATCH) return total
      }
    })

  const run = Effect.gen(function*() {
    const events = yield* drain(deleteBatch)
    const duplicates = yield* drain(deleteDuplicates)
    if (events + duplicates > 0) {
      yield* Effect.logInfo("journal retention").pipe(Effect.annotateLogs({ events, duplicates }))
    }
  }).pipe(
    Effect.catchCause((cause) => Effect.logWarning("journal retention failed", cause)),
    Effect.withTracerEnabled(false)
  )

  yield* Effect.forkScoped(
    database.awaitReady.pipe(Effect.andThen(run.pipe(Effect.repeat(Schedule.spaced(RETENTION_INTERVAL)))))
  )
}))
