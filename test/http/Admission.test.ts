import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { connect } from "node:net"
import { WEBHOOK_RETRY_AFTER_SECONDS } from "../../src/http/WebhookPath.ts"
import { TestApp, VERIFY_TOKEN } from "../support/TestApp.ts"
import { sign } from "../support/Webhooks.ts"

const MAX_INFLIGHT = 2

/**
 * A webhook POST sent with `Expect: 100-continue` and no body: the service's `100 Continue` says it
 * holds the request (reading its body), and it stays in flight until `finish` sends the body.
 */
const heldWebhook = (port: number, body: string) => {
  const socket = connect(port, "127.0.0.1")
  let received = ""
  const waiters: Array<() => void> = []
  socket.on("data", (chunk: Buffer) => {
    received += chunk.toString("latin1")
    for (const waiter of waiters) waiter()
  })
  socket.on("error", () => {})
  const until = (done: () => boolean) =>
    new Promise<string>((resolve) => {
      const check = () => done() && resolve(received)
      waiters.push(check)
      check()
    })
  socket.write(
    `POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n` +
      `X-Hub-Signature-256: ${sign(body)}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`
  )
  return {
    held: until(() => received.startsWith("HTTP/1.1 100 Continue\r\n\r\n")),
    finish: () => {
      socket.write(body)
      // The final answer follows the 100: its status line, headers and a JSON body.
      return until(() => /\r\n\r\nHTTP\/1\.1 \d{3} [^]*\r\n\r\n\{[^]*\}$/.test(received))
        .then((text) => text.slice(text.indexOf("\r\n\r\n") + 4))
        .finally(() => socket.destroy())
    }
  }
}

const bodyOf = (id: string) =>
  JSON.stringify({ object: "instagram", entry: [{ id, time: 1, changes: [{ field: "comments", value: { id: `c-${id}` } }] }] })

layer(TestApp.layer("admission", { maxInflightWebhooks: MAX_INFLIGHT, rateLimitWebhook: 0 }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("webhooks in flight", (it) => {
  it.effect("over MAX_INFLIGHT_WEBHOOKS a webhook is answered 503 with Retry-After; the health check, verification and later webhooks are not", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const port = Number(new URL(app.baseUrl).port)
      const held = Array.from({ length: MAX_INFLIGHT }, (_, i) => heldWebhook(port, bodyOf(`held-${i}`)))
      yield* Effect.promise(() => Promise.all(held.map((request) => request.held)))
      const body = bodyOf("third")
      const post = () =>
        app.request<{ detail: string }>("/webhook", {
          method: "POST",
          auth: false,
          body,
          headers: { "content-type": "application/json", "x-hub-signature-256": sign(body) }
        })
      const refused = yield* post()
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.headers.get("retry-after"), String(WEBHOOK_RETRY_AFTER_SECONDS))
      assert.include(refused.body.detail, "MAX_INFLIGHT_WEBHOOKS")

      const health = yield* app.request("/monitoring/health", { auth: false })
      assert.strictEqual(health.status, 200)
      const verified = yield* app.request(
        `/webhook?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=42`,
        { auth: false }
      )
      assert.strictEqual(verified.status, 200)
      assert.strictEqual(verified.text, "42")

      const answers = yield* Effect.promise(() => Promise.all(held.map((request) => request.finish())))
      for (const answer of answers) assert.match(answer, /^HTTP\/1\.1 200 /)
      // Their slots are given back: the next webhook is admitted and recorded.
      const admitted = yield* post()
      assert.strictEqual(admitted.status, 200)
    }))
})
