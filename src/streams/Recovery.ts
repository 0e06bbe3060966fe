import { Duration, Effect, Layer, Schedule } from "effect"
import type { JournaledEvent } from "../domain/JournaledEvent.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"
import { JournalStore, type PendingRow } from "../services/JournalStore.ts"
import { type BacklogKey, Lanes } from "../services/Lanes.ts"
import { traceFromJournal } from "../services/TraceContext.ts"

/** Pending events read back per backlog key and round. */
export const BACKLOG_READ_PER_KEY = 500
/** A backlog key that waits for another instance's older event is read again this often. */
export const BACKLOG_POLL = Duration.millis(100)
/** Keys with abandoned pending events (lease over, holder gone) put in backlog per sweep. */
export const SWEEP_KEYS = 500

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
 * Reads backlog keys' pending events into the lanes in journal order, stopping at an older event another
 * live instance holds; the sweeper backlogs the keys of events whose holder stopped renewing its lease.
 */
export const RecoveryLive = Layer.effectDiscard(Effect.gen(function*() {
  const store = yield* JournalStore
  const database = yield* Database
  const lanes = yield* Lanes
  const config = yield* AppConfig
  // Per backlog key, the journal sequence read up to, so a long backlog is read in pieces.
  const cursors = new Map<string, string>()

  /** One round over some backlog keys; true when a key still waits for another instance's event. */
  const readRound = (keys: ReadonlyArray<BacklogKey>, room: number) =>
    Effect.gen(function*() {
      const perKey = Math.max(1, Math.min(BACKLOG_READ_PER_KEY, Math.floor(room / keys.length)))
      const rows = yield* store.readBacklog(keys.map((k) => k.key), keys.map((k) => cursors.get(k.key) ?? "0"), perKey)
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
      const claimed = toClaim.length === 0 ? new Set<string>() : new Set(yield* store.claim(toClaim))
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
    // An event delivered and released while the round reads was still pending in what it read.
    const waiting = yield* lanes.reading(readRound(keys, room))
    if (waiting) yield* Effect.sleep(BACKLOG_POLL)
  }).pipe(
    Effect.catchCause((cause) =>
      Effect.logWarning("reading pending events back failed", cause).pipe(Effect.andThen(Effect.sleep("1 second")))
    ),
    Effect.withTracerEnabled(false),
    Effect.forever
  )

  // Abandoned events: their holder's lease is over, or the holder is gone. Their keys are read back in journal order.
  const sweep = store.abandonedKeys(SWEEP_KEYS).pipe(
    Effect.flatMap((keys) =>
      keys.length === 0 ? Effect.void : Effect.andThen(
        Effect.logInfo("recovering pending events").pipe(Effect.annotateLogs({ keys: keys.length })),
        lanes.backlog(keys)
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
