import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { createServer } from "node:net"
import { ensureDatabase, runMigrations } from "../src/layers/Sql.ts"
import { PgClient } from "@effect/sql-pg"
import { Reactivity } from "effect/reactivity"
import { databaseExists, dropDatabase } from "./support/TestDatabase.ts"
import { startService, stopService, waitHealthy } from "./support/ServiceProcess.ts"

const productionEnv = {
  NODE_ENV: "production",
  INSTAGRAM_APP_ID: "1234",
  INSTAGRAM_APP_SECRET: "startup-app-secret",
  WEBHOOK_VERIFY_TOKEN: "startup-verify-token",
  SECRET_KEY: "startup-secret-key"
}

const freshName = () => `chatico_test_startup_${Math.random().toString(36).slice(2, 8)}`

describe("start-up", () => {
  it.live("a missing SECRET_KEY stops start-up with one clear line and a non-zero exit", () =>
    Effect.promise(async () => {
      const { SECRET_KEY: _omitted, ...env } = productionEnv
      const service = await startService({ ...env, DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${freshName()}` })
      const { code } = await service.exited
      assert.notStrictEqual(code, 0)
      const lines = service.output().trim().split("\n").filter((line) => line.includes("SECRET_KEY"))
      assert.strictEqual(lines.length, 1, service.output())
      assert.include(lines[0], "missing required environment variable SECRET_KEY")
      assert.notInclude(service.output(), "startup-app-secret")
    }))

  it.live("each required variable is named when it is missing in production", () =>
    Effect.promise(async () => {
      for (const variable of ["INSTAGRAM_APP_SECRET", "WEBHOOK_VERIFY_TOKEN", "INSTAGRAM_APP_ID"] as const) {
        const env: Record<string, string> = { ...productionEnv }
        delete env[variable]
        const service = await startService(env)
        const { code } = await service.exited
        assert.notStrictEqual(code, 0, variable)
        assert.include(service.output(), `missing required environment variable ${variable}`)
      }
    }))

  it.live("a port already in use stops start-up with a JSON log line saying why, and a non-zero exit", () =>
    Effect.promise(async () => {
      const blocker = createServer()
      await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", () => resolve()))
      const address = blocker.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      try {
        const service = await startService({ ...productionEnv, DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${freshName()}` }, port)
        const { code } = await service.exited
        assert.notStrictEqual(code, 0)
        const lines = service.output().trim().split("\n").filter((line) => line.length > 0)
        for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), line)
        assert.isTrue(lines.some((line) => line.includes("chatico-mapper stopped") && line.includes("EADDRINUSE")), service.output())
      } finally {
        blocker.close()
      }
    }))

  it.live("start-up against a database that does not exist creates it and migrates", () =>
    Effect.promise(async () => {
      const name = freshName()
      assert.isFalse(await Effect.runPromise(databaseExists(name)))
      const service = await startService({ ...productionEnv, DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${name}` })
      try {
        await waitHealthy(service)
        assert.isTrue(await Effect.runPromise(databaseExists(name)))
        const list = await fetch(`${service.baseUrl}/worker-apps/`, {
          headers: { authorization: `Bearer ${productionEnv.SECRET_KEY}` }
        })
        assert.strictEqual(list.status, 200)
        assert.deepStrictEqual(await list.json(), { items: [], total: 0 })
        assert.notInclude(service.output(), productionEnv.SECRET_KEY)
      } finally {
        const { code } = await stopService(service)
        assert.strictEqual(code, 0, service.output())
        await Effect.runPromise(dropDatabase(name))
      }
    }))

  it.live("migrations run twice without harm", () =>
    Effect.gen(function*() {
      const name = freshName()
      const url = Redacted.make(`postgres://postgres@127.0.0.1:5432/${name}`)
      yield* Effect.addFinalizer(() => dropDatabase(name))
      yield* ensureDatabase(url)
      yield* ensureDatabase(url)
      const [first, second] = yield* Effect.gen(function*() {
        const first = yield* runMigrations
        const second = yield* runMigrations
        return [first, second] as const
      }).pipe(
        Effect.provide(PgClient.layer({ url, maxConnections: 2 }).pipe(Layer.provide(Reactivity.layer)))
      )
      assert.isAbove(first.length, 0)
      assert.deepStrictEqual(second, [])
    }).pipe(Effect.scoped))
})
