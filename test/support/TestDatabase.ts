import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import { Reactivity } from "effect/reactivity"

export const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"

/** A database of this test file's own, dropped when the file's layer closes. */
export class TestDatabase extends Context.Service<TestDatabase, {
  readonly name: string
  readonly url: string
}>()("test/TestDatabase") {
  static readonly layer = (prefix: string) =>
    Layer.effect(
      TestDatabase,
      Effect.gen(function*() {
        const name = `chatico_test_${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${
          Math.random().toString(36).slice(2, 8)
        }`
        yield* Effect.addFinalizer(() => dropDatabase(name))
        return TestDatabase.of({ name, url: `postgres://postgres@127.0.0.1:5432/${name}` })
      })
    )
}

const withAdmin = <A, E>(f: (sql: PgClient.PgClient) => Effect.Effect<A, E>) =>
  Effect.scoped(
    Effect.flatMap(PgClient.make({ url: Redacted.make(ADMIN_URL), maxConnections: 1 }), f)
  ).pipe(Effect.provide(Reactivity.layer))

export const dropDatabase = (name: string) =>
  withAdmin((sql) => sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).pipe(Effect.orDie, Effect.asVoid)

export const databaseExists = (name: string) =>
  withAdmin((sql) => sql`SELECT 1 FROM pg_database WHERE datname = ${name}`).pipe(
    Effect.orDie,
    Effect.map((rows) => rows.length > 0)
  )
