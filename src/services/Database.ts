import { PgClient, PgTypes } from "@effect/sql-pg"
import { Clock, Context, Deferred, Duration, Effect, Layer, Redacted, Schedule } from "effect"
import { Reactivity } from "effect/reactivity"
import { Migrator, SqlClient } from "effect/sql"
import initialSchema from "../migrations/0001_initial_schema.ts"
import valueTextFallback from "../migrations/0003_value_text_fallback.ts"
import routingNote from "../migrations/0002_routing_note.ts"
import deliveryOrder from "../migrations/0004_delivery_order.ts"
import ownerOrEntryIndex from "../migrations/0005_owner_or_entry_index.ts"
import poisonInputs from "../migrations/0006_poison_inputs.ts"
import deliveryInstances from "../migrations/0007_delivery_instances.ts"
import valueOnce from "../migrations/0008_value_once.ts"
import leanIndexes from "../migrations/0009_lean_indexes.ts"
import pendingHolderIndex from "../migrations/0010_pending_holder_index.ts"
import { DatabaseUnavailable } from "../domain/Errors.ts"
import { AppConfig } from "./AppConfig.ts"

/** A typed array parameter (for `unnest`): an all-null column would otherwise have no type to bind. */
export const pgArray = (values: ReadonlyArray<unknown>, oid: number) => Effect.orDie(Effect.fromResult(PgTypes.array(values, oid)))

/** Connections the service keeps to Postgres; the journal's batches share them. */
export const POOL_MAX_CONNECTIONS = 10
export const CONNECT_TIMEOUT = Duration.seconds(5)
/** The pool is probed this often once migrated, so losing and regaining Postgres is logged once each. */
export const DATABASE_PROBE_INTERVAL = Duration.seconds(2)
export const DATABASE_PROBE_TIMEOUT = Duration.seconds(2)

/** Start-up keeps trying an absent database: 0.5 s, 1 s, … capped at 15 s between attempts. */
export const databaseStartupRetry = Schedule.min([
  Schedule.exponential("500 millis"),
  Schedule.spaced("15 seconds")
]).pipe(Schedule.jittered)

export const migrations = Migrator.fromRecord({
  "0001_initial_schema": initialSchema,
  "0002_routing_note": routingNote,
  "0003_value_text_fallback": valueTextFallback,
  "0004_delivery_order": deliveryOrder,
  "0005_owner_or_entry_index": ownerOrEntryIndex,
  "0006_poison_inputs": poisonInputs,
  "0007_delivery_instances": deliveryInstances,
  "0008_value_once": valueOnce,
  "0009_lean_indexes": leanIndexes,
  "0010_pending_holder_index": pendingHolderIndex
})

/** The parts of `DATABASE_URL` start-up needs, with the password kept out of every log line. */
const parseDatabaseUrl = (url: Redacted.Redacted<string>) => {
  const parsed = new URL(Redacted.value(url))
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "postgres"
  const maintenance = new URL(parsed.href)
  maintenance.pathname = "/postgres"
  return {
    database,
    maintenanceUrl: Redacted.make(maintenance.href),
    display: `${parsed.hostname}:${parsed.port || "5432"}/${database}`
  }
}

const quoteIdentifier = (name: string) => `"${name.replaceAll("\"", "\"\"")}"`

/** Creates the database named in `DATABASE_URL` when it does not exist yet. */
export const ensureDatabase = Effect.fn("Database.ensureDatabase")(function*(url: Redacted.Redacted<string>) {
  const { database, maintenanceUrl } = parseDatabaseUrl(url)
  if (database === "postgres") return
  yield* Effect.scoped(Effect.gen(function*() {
    const sql = yield* PgClient.make({ url: maintenanceUrl, maxConnections: 1, connectTimeout: CONNECT_TIMEOUT })
    const rows = yield* sql`SELECT 1 FROM pg_database WHERE datname = ${database}`
    if (rows.length > 0) return
    yield* sql.unsafe(`CREATE DATABASE ${quoteIdentifier(database)}`).pipe(
      // Another instance may have created it between the check and here.
      Effect.catchIf((error) => error.message.includes("already exists"), () => Effect.void)
    )
    yield* Effect.logInfo("created database").pipe(Effect.annotateLogs({ database }))
  }).pipe(Effect.provide(Reactivity.layer)))
})

export const runMigrations = Migrator.make({})({ loader: migrations })

export interface DatabaseStatus {
  readonly ok: boolean
  readonly migrated: boolean
  readonly latencyMs?: number
  readonly error?: string
}

/** The pooled Postgres client; creating the database and migrating retry in the background, so start-up never waits. */
export class Database extends Context.Service<Database, {
  /** Succeeds once the schema is migrated; fails at once (never waits) before that. */
  readonly ready: Effect.Effect<void, DatabaseUnavailable>
  /** Waits until the schema is migrated. */
  readonly awaitReady: Effect.Effect<void>
  readonly check: Effect.Effect<DatabaseStatus>
}>()("chatico/services/Database") {
  static readonly layerClient = Layer.unwrap(Effect.gen(function*() {
    const config = yield* AppConfig
    return PgClient.layer({
      url: config.databaseUrl,
      maxConnections: POOL_MAX_CONNECTIONS,
      connectTimeout: CONNECT_TIMEOUT,
      applicationName: "chatico-mapper"
    }).pipe(Layer.provide(Reactivity.layer))
  }))

  static readonly layerNoDeps = Layer.effect(
    Database,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const sql = yield* SqlClient.SqlClient
      const migrated = yield* Deferred.make<void>()
      const clock = yield* Clock.Clock
      const { display } = parseDatabaseUrl(config.databaseUrl)
      let lastError: string | undefined

      const start = ensureDatabase(config.databaseUrl).pipe(
        Effect.andThen(runMigrations),
        Effect.tap((applied) =>
          Effect.logInfo("database ready").pipe(
            Effect.annotateLogs({ database: display, migrationsApplied: applied.map(([id, name]) => `${id}_${name}`) })
          )
        ),
        Effect.tapError((error) =>
          Effect.sync(() => {
            lastError = error.message
          }).pipe(
            Effect.andThen(Effect.logWarning("database unavailable, retrying")),
            Effect.annotateLogs({ database: display, error: error.message })
          )
        ),
        Effect.retry(databaseStartupRetry),
        Effect.andThen(Deferred.succeed(migrated, undefined))
      )
      yield* Effect.forkScoped(start)

      // One line when Postgres stops answering, one when it answers again (the pool reconnects by itself).
      let downSince: number | undefined
      const probe = sql`SELECT 1`.pipe(
        Effect.timeout(DATABASE_PROBE_TIMEOUT),
        Effect.matchEffect({
          onSuccess: () => {
            if (downSince === undefined) return Effect.void
            const downMs = clock.currentTimeMillisUnsafe() - downSince
            downSince = undefined
            return Effect.logInfo("database reconnected").pipe(Effect.annotateLogs({ database: display, down_ms: downMs }))
          },
          onFailure: (error) => {
            if (downSince !== undefined) return Effect.void
            downSince = clock.currentTimeMillisUnsafe()
            return Effect.logWarning("database unreachable").pipe(Effect.annotateLogs({ database: display, error: error.message }))
          }
        })
      )
      yield* Effect.forkScoped(
        Effect.andThen(Deferred.await(migrated), Effect.repeat(probe, Schedule.spaced(DATABASE_PROBE_INTERVAL)))
      )

      const check = Effect.gen(function*() {
        const isMigrated = yield* Deferred.isDone(migrated)
        const started = clock.currentTimeMillisUnsafe()
        return yield* sql`SELECT 1`.pipe(
          Effect.timeout(Duration.seconds(2)),
          Effect.match({
            onSuccess: (): DatabaseStatus =>
              isMigrated
                ? { ok: true, migrated: true, latencyMs: clock.currentTimeMillisUnsafe() - started }
                : { ok: false, migrated: false, error: lastError ?? "migrating" },
            onFailure: (error): DatabaseStatus => ({ ok: false, migrated: isMigrated, error: error.message })
          })
        )
      })

      const ready = Effect.flatMap(Deferred.isDone(migrated), (done) =>
        done ? Effect.void : Effect.fail(new DatabaseUnavailable({ detail: "the database is not ready yet" }))
      )

      return Database.of({ ready, awaitReady: Deferred.await(migrated), check })
    })
  )

  static readonly layer = this.layerNoDeps.pipe(Layer.provideMerge(this.layerClient))
}
