import { Duration, Effect, Layer, Schedule } from "effect"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"
import { JournalStore, RETENTION_BATCH, type JournalStoreError } from "../services/JournalStore.ts"

export const RETENTION_INTERVAL = Duration.minutes(10)

/**
 * Keeps the journal bounded: finished events and duplicates older than `JOURNAL_RETENTION` are deleted
 * in small batches; pending events never are.
 */
export const RetentionLive = Layer.effectDiscard(Effect.gen(function*() {
  const store = yield* JournalStore
  const database = yield* Database
  const { journalRetention } = yield* AppConfig

  const drain = (statement: Effect.Effect<number, JournalStoreError>) =>
    Effect.gen(function*() {
      let total = 0
      while (true) {
        const deleted = yield* statement
        total += deleted
        if (deleted < RETENTION_BATCH) return total
      }
    })

  const run = Effect.gen(function*() {
    const events = yield* drain(store.deleteSettled(journalRetention))
    const duplicates = yield* drain(store.deleteDuplicates(journalRetention))
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
