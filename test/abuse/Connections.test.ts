import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { connect, type Socket } from "node:net"
import { HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from "../../src/http/Server.ts"
import { TestApp } from "../support/TestApp.ts"

const portOf = (baseUrl: string) => Number(new URL(baseUrl).port)

/** Opens a raw connection; resolves when it is closed by the server, with what the server sent. */
const rawClient = (port: number) => {
  const socket = connect(port, "127.0.0.1")
  socket.setNoDelay(true)
  let received = ""
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")))
  socket.on("error", () => {})
  const closed = new Promise<{ at: number; received: string }>((resolve) =>
    socket.once("close", () => resolve({ at: Date.now(), received }))
  )
  return { socket, closed }
}

/** Writes one byte a second until the socket closes. */
const dribble = (socket: Socket, text: string) => {
  let i = 0
  const timer = setInterval(() => {
    if (socket.destroyed || i >= text.length) return clearInterval(timer)
    socket.write(text[i++]!)
  }, 1_000)
  return () => clearInterval(timer)
}

layer(TestApp.layer("abuse_conn"), { excludeTestServices: true, timeout: "120 seconds" })("slow and idle clients", (it) => {
  it.effect("a client sending headers a byte a second is cut off, and others are served meanwhile", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const started = Date.now()
      const slow = rawClient(portOf(app.baseUrl))
      slow.socket.write("POST /webhook HTTP/1.1\r\nHost: x\r\n")
      const stop = dribble(slow.socket, "X-Slow: " + "a".repeat(60))
      const health = yield* app.request("/monitoring/health", { auth: false })
      assert.strictEqual(health.status, 200)
      const { at } = yield* Effect.promise(() => slow.closed)
      stop()
      assert.isBelow(at - started, HEADERS_TIMEOUT_MS + 5_000)
    }), 40_000)

  it.effect("a client sending its body a byte a second is cut off", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const started = Date.now()
      const slow = rawClient(portOf(app.baseUrl))
      slow.socket.write("POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n")
      const stop = dribble(slow.socket, "{".repeat(500))
      const { at } = yield* Effect.promise(() => slow.closed)
      stop()
      assert.isBelow(at - started, REQUEST_TIMEOUT_MS + 5_000)
    }), 40_000)

  it.effect("oversized headers are refused with 431", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const response = yield* app.request("/monitoring/health", { auth: false, headers: { "x-big": "a".repeat(32 * 1024) } })
      assert.strictEqual(response.status, 431)
    }))

  it.effect("a thousand idle connections do not stop the service answering others", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const idle = Array.from({ length: 1000 }, () => rawClient(portOf(app.baseUrl)))
      yield* Effect.promise(() => Promise.all(idle.map(({ socket }) => new Promise((resolve) => socket.once("connect", resolve)))))
      for (let i = 0; i < 5; i++) {
        const response = yield* app.request("/worker-apps/")
        assert.strictEqual(response.status, 200)
      }
      for (const { socket } of idle) socket.destroy()
    }))
})
