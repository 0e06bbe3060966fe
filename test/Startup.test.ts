import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { ACCEPTORS } from "../src/http/Server.ts"
import { ensureDatabase, runMigrations } from "../src/services/Database.ts"
import { PgClient } from "@effect/sql-pg"
import { Reactivity } from "effect/reactivity"
import { databaseExists, dropDatabase } from "./support/TestDatabase.ts"
import { freePort, ROOT, startService, stopService, waitHealthy } from "./support/ServiceProcess.ts"

const productionEnv = {
  NODE_ENV: "production",
  INSTAGRAM_APP_ID: "1234",
  INSTAGRAM_APP_SECRET: "startup-app-secret",
  WEBHOOK_VERIFY_TOKEN: "startup-verify-token",
  SECRET_KEY: "startup-secret-key"
}

/** Whether something accepts connections on this loopback port. */
const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const probe = createServer()
    probe.once("error", () => resolve(false))
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)))
  })

/** Sockets listening on this port on 127.0.0.1, from the kernel's table (state 0A is LISTEN). */
const listeners = (port: number) =>
  readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1).filter((line) => {
    const [, local, , state] = line.trim().split(/\s+/)
    return state === "0A" && local === `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`
  }).length

/** One request on a new connection; resolves with the status line. */
const rawGet = (port: number, path: string) =>
  new Promise<string>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1")
    let received = ""
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1")
      if (received.includes("\r\n")) {
        resolve(received.slice(0, received.indexOf("\r\n")))
        socket.destroy()
      }
    })
    socket.on("error", reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
  })

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

  it.live("a NODE_ENV that is not production, development or test stops start-up with one line", () =>
    Effect.promise(async () => {
      const service = await startService({ ...productionEnv, NODE_ENV: "prod" })
      const { code } = await service.exited
      assert.notStrictEqual(code, 0)
      const lines = service.output().trim().split("\n")
      assert.strictEqual(lines.length, 1, service.output())
      assert.include(lines[0], "invalid environment variable NODE_ENV: must be production, development or test")
    }))

  it.live("development on a non-loopback HOST without its secrets stops start-up naming the variable", () =>
    Effect.promise(async () => {
      const service = await startService({ HOST: "0.0.0.0" })
      const { code } = await service.exited
      assert.notStrictEqual(code, 0)
      assert.include(service.output(), "missing required environment variable INSTAGRAM_APP_SECRET")
      assert.strictEqual(service.output().trim().split("\n").length, 1, service.output())
    }))

  it.live("the service listens on ACCEPTORS sockets of one port, and a burst of new connections is served through them", () =>
    Effect.promise(async () => {
      const name = freshName()
      const service = await startService({ DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${name}` })
      try {
        await waitHealthy(service)
        assert.strictEqual(listeners(service.port), ACCEPTORS)
        const statuses = await Promise.all(Array.from({ length: 300 }, () => rawGet(service.port, "/monitoring/health")))
        assert.deepStrictEqual(new Set(statuses), new Set(["HTTP/1.1 200 OK"]))
        const { code } = await stopService(service)
        assert.strictEqual(code, 0, service.output())
        assert.strictEqual(listeners(service.port), 0)
      } finally {
        await stopService(service)
        await Effect.runPromise(dropDatabase(name))
      }
    }))

  it.live("SIGTERM to `npm start` stops the service within 10 s and frees the port", () =>
    Effect.promise(async () => {
      const name = freshName()
      const port = await freePort()
      // npm as an operator runs it: the machine's npm, the project's node first on PATH.
      const npm = spawn("npm", ["start", "--silent"], {
        cwd: ROOT,
        env: {
          PATH: `${ROOT}/node_modules/.bin:${process.env.PATH ?? ""}`,
          PORT: String(port),
          DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${name}`
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      npm.stdout.on("data", (chunk) => (output += chunk))
      npm.stderr.on("data", (chunk) => (output += chunk))
      const exited = new Promise<void>((resolve) => npm.once("exit", () => resolve()))
      try {
        await waitHealthy({ child: npm, port, baseUrl: `http://127.0.0.1:${port}`, output: () => output, exited: exited.then(() => ({ code: null, signal: null })) })
        const started = Date.now()
        npm.kill("SIGTERM")
        await exited
        // The port is free only once node itself has exited, not just npm.
        let free = await portFree(port)
        while (!free && Date.now() - started < 10_000) {
          await new Promise((resolve) => setTimeout(resolve, 100))
          free = await portFree(port)
        }
        assert.isTrue(free, `port ${port} still taken 10 s after SIGTERM to npm:\n${output}`)
        assert.isBelow(Date.now() - started, 10_000)
        assert.include(output, "shutting down")
      } finally {
        if (npm.exitCode === null) npm.kill("SIGKILL")
        await Effect.runPromise(dropDatabase(name))
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
