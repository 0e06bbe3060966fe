import { Duration, Effect, Layer, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import type { JournaledEvent } from "../domain/JournaledEvent.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"
import { type BacklogKey, INSTANCE_GONE_AFTER_SECONDS, Lanes } from "../services/Lanes.ts"
import { traceFromJournal } from "../services/TraceContext.ts"

/** Pending events read back per backlog key and round. */
export const BACKLOG_READ_PER_KEY = 500
/** A backlog key that waits for another instance's older event is read again this often. */
export const BACKLOG_POLL = Duration.millis(100)
/** Keys with abandoned pending events (lease over, holder gone) put in backlog per sweep. */
export const SWEEP_KEYS = 500

interface PendingRow {
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
  readonly seq: string
  readonly mine: boolean
  readonly free: boolean
}

const toEvent = (row: PendingRow): JournaledEvent => ({
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
 * Recovery: reads the pending events of backlog keys back from the journal, in journal order, into
 * the lanes; a key's run stops at an older event another live instance holds, and is read again
 * once that one is done. The sweeper puts the keys of abandoned events (their holder stopped
 * renewing its lease: a crash, a shutdown) in backlog. Replays and a full lanes go the same way.
 */
export const RecoveryLive = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const database = yield* Database
  const lanes = yield* Lanes
  const config = yield* AppConfig
  const leaseSeconds = Duration.toSeconds(config.deliveryLease)
  const me = lanes.instanceId
  // Per backlog key, the journal sequence read up to, so a long backlog is read in pieces.
  const cursors = new Map<string, string>()

  // Free to take: its lease ran out, or its holder is gone (not seen for INSTANCE_GONE_AFTER_SECONDS).
  const free = (row: string) =>
    sql`(${sql.literal(row)}.lease_until IS NULL OR ${sql.literal(row)}.lease_until < now() OR (${sql.literal(row)}.claimed_by IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM delivery_instances d
      WHERE d.id = ${sql.literal(row)}.claimed_by AND d.seen_at > now() - make_interval(secs => ${INSTANCE_GONE_AFTER_SECONDS})
    )))`

  const readBacklog = (keys: ReadonlyArray<string>, after: ReadonlyArray<string>, perKey: number) =>
    sql<PendingRow>`
      SELECT e.event_id, e.object, e.field, e.entry_id, e.entry_time, e.media_id, e.value_raw, e.received_at,
             e.attempts, e.trace_context, e.seq::text AS seq, e.claimed_by IS NOT DISTINCT FROM ${me}::uuid AS mine,
             ${free("e")} AS free
      FROM unnest(${keys}::text[], ${after}::text[]) AS k(key, after)
      CROSS JOIN LATERAL (
        SELECT * FROM webhook_events w
        WHERE w.status = 'pending' AND w.entry_id = k.key AND w.seq > k.after::bigint
        ORDER BY w.seq LIMIT ${perKey}
      ) e
      ORDER BY e.entry_id, e.seq
    `

  const claim = (eventIds: ReadonlyArray<string>) =>
    sql<{ readonly event_id: string }>`
      UPDATE webhook_events SET claimed_by = ${me}::uuid, lease_until = now() + make_interval(secs => ${leaseSeconds})
      WHERE event_id = ANY(${eventIds}::text[]) AND status = 'pending' AND ${free("webhook_events")}
      RETURNING event_id
    `

  /** One round over some backlog keys; true when a key still waits for another instance's event. */
  const readRound = (keys: ReadonlyArray<BacklogKey>, room: number) =>
    Effect.gen(function*() {
      const perKey = Math.max(1, Math.min(BACKLOG_READ_PER_KEY, Math.floor(room / keys.length)))
      const rows = yield* readBacklog(keys.map((k) => k.key), keys.map((k) => cursors.get(k.key) ?? "0"), perKey)
      const byKey = new Map<string, Array<PendingRow>>()
      for (const row of rows) {
        const list = byKey.get(row.entry_id)
        if (list === undefined) byKey.set(row.entry_id, [row])
        else list.push(row)
      }
      // A key's run: its rows up to the first one another live instance holds.
      const runs = new Map<string, { readonly rows: ReadonlyArray<PendingRow>; readonly blocked: boolean }>()
      const toClaim: Array<string> = []
      for (const [key, list] of byKey) {
        const stop = list.findIndex((row) => !row.mine && !row.free)
        const run = stop === -1 ? list : list.slice(0, stop)
        runs.set(key, { rows: run, blocked: stop !== -1 })
        for (const row of run) if (!row.mine) toClaim.push(row.event_id)
      }
      const claimed = toClaim.length === 0 ? new Set<string>() : new Set((yield* claim(toClaim)).map((r) => r.event_id))
      let waiting = false
      for (const backlogKey of keys) {
        const found = runs.get(backlogKey.key)
        if (found === undefined) {
          if (!(yield* lanes.settle(backlogKey))) continue
          cursors.delete(backlogKey.key)
          continue
        }
        // Another instance claimed one first: this key's run ends before it.
        const lost = found.rows.findIndex((row) => !row.mine && !claimed.has(row.event_id))
        const run = lost === -1 ? found.rows : found.rows.slice(0, lost)
        const blocked = found.blocked || lost !== -1
        yield* lanes.feed(backlogKey.key, run.map(toEvent))
        const last = run[run.length - 1]
        if (last !== undefined) cursors.set(backlogKey.key, last.seq)
        if (blocked) waiting = true
        else if (run.length < perKey && (yield* lanes.settle(backlogKey))) cursors.delete(backlogKey.key)
      }
      return waiting
    })

  const reader = Effect.gen(function*() {
    const keys = yield* lanes.backlogKeys
    const room = yield* lanes.room
    if (room === 0) return yield* Effect.sleep(BACKLOG_POLL)
    const waiting = yield* readRound(keys, room)
    if (waiting) yield* Effect.sleep(BACKLOG_POLL)
  }).pipe(
    Effect.catchCause((cause) =>
      Effect.logWarning("reading pending events back failed", cause).pipe(Effect.andThen(Effect.sleep("1 second")))
    ),
    Effect.withTracerEnabled(false),
    Effect.forever
  )

  // Abandoned events: their holder's lease is over, or the holder is gone. Their keys are read back in journal order.
  const sweep = sql<{ readonly entry_id: string }>`
    SELECT DISTINCT entry_id FROM (
      SELECT entry_id FROM webhook_events
      WHERE status = 'pending' AND ${free("webhook_events")}
      LIMIT ${SWEEP_KEYS * 10}
    ) abandoned LIMIT ${SWEEP_KEYS}
  `.pipe(
    Effect.flatMap((rows) =>
      rows.length === 0 ? Effect.void : Effect.andThen(
        Effect.logInfo("recovering pending events").pipe(Effect.annotateLogs({ keys: rows.length })),
        lanes.backlog(rows.map((row) => row.entry_id))
      )
    ),
    Effect.catchCause((cause) => Effect.logWarning("recovery sweep failed", cause)),
    // A sweep every few seconds is not worth a trace each; the events it recovers continue their own trace.
    Effect.withTracerEnabled(false)
  )

  yield* Effect.forkScoped(Effect.andThen(database.awaitReady, reader))
  yield* Effect.forkScoped(
    Effect.andThen(database.awaitReady, sweep.pipe(Effect.repeat(Schedule.spaced(config.sweepInterval))))
  )
}))
