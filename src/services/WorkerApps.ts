import { Context, Effect, Layer } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import {
  type ListFilter,
  WorkerApp,
  WorkerAppConflict,
  type WorkerAppCreate,
  WorkerAppId,
  WorkerAppNotFound,
  WorkerAppsError,
  type WorkerAppUpdate
} from "../domain/WorkerApp.ts"
import { DatabaseUnavailable } from "../domain/Errors.ts"
import { Database } from "./Database.ts"

/** Postgres channel on which every change to `worker_apps` is announced, so all instances refresh. */
export const WORKER_APPS_CHANNEL = "chatico_worker_apps"

interface WorkerAppRow {
  readonly id: string
  readonly name: string
  readonly owner_id: string
  readonly queue_name: string
  readonly is_active: boolean
  readonly description: string | null
  readonly created_at: Date | string
  readonly updated_at: Date | string
}

const toIso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString()

export const fromRow = (row: WorkerAppRow) =>
  new WorkerApp({
    id: WorkerAppId.make(row.id),
    name: row.name,
    owner_id: row.owner_id,
    queue_name: row.queue_name,
    is_active: row.is_active,
    description: row.description,
    created_at: toIso(row.created_at),
    updated_at: toIso(row.updated_at)
  })

const uniqueFields = ["name", "owner_id", "queue_name"] as const

// Postgres faults reach the caller as "unavailable" (503), never as a raw SQL error.
const unavailable = (error: SqlError.SqlError | DatabaseUnavailable) =>
  new WorkerAppsError({
    reason: error._tag === "DatabaseUnavailable" ? error : new DatabaseUnavailable({ detail: "the database is unavailable" })
  })

const notFound = (id: string) =>
  new WorkerAppsError({ reason: new WorkerAppNotFound({ detail: `worker app ${id} not found` }) })

// A unique violation names its constraint (`worker_apps_<field>_key`); any other SQL failure is a defect.
const mapWriteError = (error: SqlError.SqlError) => {
  if (error.reason._tag === "UniqueViolation") {
    const constraint = error.reason.constraint
    const field = uniqueFields.find((f) => constraint === `worker_apps_${f}_key`) ?? "name"
    return Effect.fail(
      new WorkerAppsError({
        reason: new WorkerAppConflict({ field, detail: `a worker app with this ${field} already exists` })
      })
    )
  }
  return Effect.fail(unavailable(error))
}

/**
 * Declares a worker app's queue before its row commits; failing (a queue that cannot be declared)
 * rolls the write back. A broker that is away is the caller's to forgive.
 */
export type DeclareQueue = (queueName: string) => Effect.Effect<void, WorkerAppsError>

export class WorkerApps extends Context.Service<WorkerApps, {
  create(input: WorkerAppCreate, declare: DeclareQueue): Effect.Effect<WorkerApp, WorkerAppsError>
  get(id: WorkerAppId): Effect.Effect<WorkerApp, WorkerAppsError>
  list(
    filter: ListFilter
  ): Effect.Effect<{ readonly items: ReadonlyArray<WorkerApp>; readonly total: number }, WorkerAppsError>
  /** `declare` runs only when `queue_name` changes. */
  update(id: WorkerAppId, input: WorkerAppUpdate, declare: DeclareQueue): Effect.Effect<WorkerApp, WorkerAppsError>
  toggle(id: WorkerAppId): Effect.Effect<WorkerApp, WorkerAppsError>
  remove(id: WorkerAppId): Effect.Effect<void, WorkerAppsError>
  /** Every worker app, for the router's in-memory snapshot. */
  readonly all: Effect.Effect<ReadonlyArray<WorkerApp>, WorkerAppsError>
}>()("chatico/services/WorkerApps") {
  static readonly layerNoDeps = Layer.effect(
    WorkerApps,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const database = yield* Database

      // Tell every instance's router to reload its snapshot; a missed notice
      // is covered by the router's periodic refresh, so it never fails a write.
      const announce = (id: string) =>
        sql`SELECT pg_notify(${WORKER_APPS_CHANNEL}, ${id})`.pipe(
          Effect.catch((error) => Effect.logWarning("worker app change notice failed", error.message))
        )

      // A write and its queue's declare, in one transaction: no row for a queue that cannot exist.
      const withDeclare = (write: Effect.Effect<ReadonlyArray<WorkerAppRow>, WorkerAppsError>, declare: DeclareQueue | undefined) =>
        sql.withTransaction(Effect.gen(function*() {
          const rows = yield* write
          const row = rows[0]
          if (row !== undefined && declare !== undefined) yield* declare(row.queue_name)
          return rows
        })).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(unavailable(error))))

      const create = Effect.fn("WorkerApps.create")(function*(input: WorkerAppCreate, declare: DeclareQueue) {
        yield* database.ready.pipe(Effect.mapError(unavailable))
        const rows = yield* withDeclare(sql<WorkerAppRow>`
          INSERT INTO worker_apps ${
          sql.insert({
            name: input.name,
            owner_id: input.owner_id,
            queue_name: input.queue_name,
            description: input.description ?? null,
            is_active: input.is_active ?? true
          })
        }
          RETURNING *
        `.pipe(Effect.catchTag("SqlError", mapWriteError)), declare)
        const app = fromRow(rows[0]!)
        yield* announce(app.id)
        return app
      })

      const get = Effect.fn("WorkerApps.get")(function*(id: WorkerAppId) {
        yield* database.ready.pipe(Effect.mapError(unavailable))
        const rows = yield* sql<WorkerAppRow>`SELECT * FROM worker_apps WHERE id = ${id}`.pipe(Effect.mapError(unavailable))
        if (rows.length === 0) return yield* notFound(id)
        return fromRow(rows[0]!)
      })

      const list = Effect.fn("WorkerApps.list")(function*(filter: ListFilter) {
        yield* database.ready.pipe(Effect.mapError(unavailable))
        const conditions = [
          ...(filter.is_active === undefined ? [] : [sql`is_active = ${filter.is_active}`]),
          ...(filter.owner_id === undefined ? [] : [sql`owner_id = ${filter.owner_id}`])
        ]
        const where = sql.and(conditions)
        const [rows, counts] = yield* Effect.all([
          sql<WorkerAppRow>`
            SELECT * FROM worker_apps WHERE ${where}
            ORDER BY created_at, id LIMIT ${filter.limit} OFFSET ${filter.offset}
          `,
          sql<{ readonly total: number | string }>`SELECT count(*)::int AS total FROM worker_apps WHERE ${where}`
        ], { concurrency: 2 }).pipe(Effect.mapError(unavailable))
        return { items: rows.map(fromRow), total: Number(counts[0]?.total ?? 0) }
      })

      const update = Effect.fn("WorkerApps.update")(function*(id: WorkerAppId, input: WorkerAppUpdate, declare: DeclareQueue) {
        yield* database.ready.pipe(Effect.mapError(unavailable))
        const changes = Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined))
        if (Object.keys(changes).length === 0) return yield* get(id)
        const rows = yield* withDeclare(sql<WorkerAppRow>`
          UPDATE worker_apps SET ${sql.update(changes)}, updated_at = now()
          WHERE id = ${id}
          RETURNING *
        `.pipe(Effect.catchTag("SqlError", mapWriteError)), input.queue_name === undefined ? undefined : declare)
        if (rows.length === 0) return yield* notFound(id)
        const app = fromRow(rows[0]!)
        yield* announce(app.id)
        return app
      })

      const toggle = Effect.fn("WorkerApps.toggle")(function*(id: WorkerAppId) {
        yield* database.ready.pipe(Effect.mapError(unavailable))
        const rows = yield* sql<WorkerAppRow>`
          UPDATE worker_apps SET is_active = NOT is_active, updated_at = now()
          WHERE id = ${id}
          RETURNING *
        `.pipe(Effect.mapError(unavailable))
        if (rows.length === 0) return yield* notFound(id)
        const app = fromRow(rows[0]!)
        yield* announce(app.id)
        return app
      })

      const remove = Effect.fn("WorkerApps.remove")(function*(id: WorkerAppId) {
        yield* database.ready.pipe(Effect.mapError(unavailable))
        const rows = yield* sql<{ readonly id: string }>`DELETE FROM worker_apps WHERE id = ${id} RETURNING id`.pipe(
          Effect.mapError(unavailable)
        )
        if (rows.length === 0) return yield* notFound(id)
        yield* announce(id)
      })

      // Never on the wire (the router logs it), so the reason keeps what Postgres said.
      const all = Effect.andThen(
        database.awaitReady,
        sql<WorkerAppRow>`SELECT * FROM worker_apps`.pipe(
          Effect.map((rows) => rows.map(fromRow)),
          Effect.mapError((error) => new WorkerAppsError({ reason: new DatabaseUnavailable({ detail: error.message }) }))
        )
      )

      return WorkerApps.of({ create, get, list, update, toggle, remove, all })
    })
  )

  static readonly layer = this.layerNoDeps.pipe(Layer.provide(Database.layer))
}
