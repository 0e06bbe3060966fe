import { Duration, Effect, Layer, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import { AppConfig } from "../layers/Config.ts"
import { Database } from "../layers/Sql.ts"
import { Broker } from "../services/Broker.ts"
import { traceFromJournal } from "../services/TraceContext.ts"
import type { JournaledEvent } from "./Journal.ts"
import { Delivery } from "./Publish.ts"

/** Pending events claimed per sweep. */
export const SWEEP_BATCH = 500

interface ClaimedRow {
  readonly event_id: string
  readonly object: string
  readonly field: string
  readonly entry_id: string
  readonly entry_time: string | null
  readonly media_id: string | null
  readonly value_raw: string
  readonly received_at: Date | string
  readonly attempts: number
  readonly trace_context: unknown
}

const toEvent = (row: ClaimedRow): JournaledEvent => ({
  eventId: row.event_id,
  object: row.object,
  field: row.field,
  entryId: row.entry_id,
  entryTimeText: row.entry_time,
  mediaId: row.media_id,
  valueRaw: row.value_raw,
  receivedAt: row.received_at instanceof Date ? row.received_at : new Date(row.received_at),
  attempts: row.attempts,
  trace: traceFromJournal(row.trace_context)
})

/**
 * The recovery sweeper: on start and every `SWEEP_INTERVAL`, claims events
 * still `pending` after their lease (`FOR UPDATE SKIP LOCKED`, so two
 * instances never claim the same row) and feeds them to delivery. This is what
 * delivers events after a crash, a broker outage or a full mailbox.
 */
export const RecoverLive = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const database = yield* Database
  const broker = yield* Broker
  const delivery = yield* Delivery
  const config = yield* AppConfig
  const leaseSeconds = Duration.toSeconds(config.deliveryLease)

  const claim = sql<ClaimedRow>`
    WITH claimed AS (
      SELECT event_id FROM webhook_events
      WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now())
      ORDER BY lease_until NULLS FIRST, received_at
      LIMIT ${SWEEP_BATCH}
      FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_events AS w SET lease_until = now() + make_interval(secs => ${leaseSeconds})
    FROM claimed WHERE w.event_id = claimed.event_id
    RETURNING w.event_id, w.object, w.field, w.entry_id, w.entry_time, w.media_id, w.value_raw, w.received_at, w.attempts, w.trace_context
  `

  // Sweep until a claim comes back short of a full batch.
  const sweep: Effect.Effect<void, unknown> = Effect.gen(function*() {
    if (!(yield* broker.isConnected)) return
    const rows = yield* claim
    if (rows.length === 0) return
    yield* Effect.logInfo("recovering pending events").pipe(Effect.annotateLogs({ count: rows.length }))
    yield* delivery.submitWaiting(rows.map(toEvent))
    if (rows.length === SWEEP_BATCH) yield* sweep
  })

  yield* Effect.forkScoped(
    database.awaitReady.pipe(
      Effect.andThen(
        sweep.pipe(
          Effect.catchCause((cause) => Effect.logWarning("recovery sweep failed", cause)),
          // A sweep every few seconds is not worth a trace each; the events it
          // recovers continue their own webhook's trace.
          Effect.withTracerEnabled(false),
          Effect.repeat(Schedule.spaced(config.sweepInterval))
        )
      )
    )
  )
}))
