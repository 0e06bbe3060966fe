import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { AdminClient, answered } from "../support/AdminClient.ts"
import { TestApp } from "../support/TestApp.ts"
import { sign } from "../support/Webhooks.ts"

const signed = (body: string) => ({
  "content-type": "application/json",
  "x-hub-signature-256": sign(body)
})

layer(TestApp.layer("guard", { rateLimitAdmin: 2, rateLimitWebhook: 5 }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("request guard", (it) => {
  it.effect("limits each client on the admin API with 429 and Retry-After, never the health check", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const statuses: Array<number> = []
      let retryAfter: string | null = null
      for (let i = 0; i < 10; i++) {
        const response = yield* app.request("/worker-apps/")
        statuses.push(response.status)
        if (response.status === 429) retryAfter = response.headers.get("retry-after")
      }
      // A burst of twice the rate passes, then the bucket is empty.
      assert.deepStrictEqual(statuses.slice(0, 4), [200, 200, 200, 200])
      assert.include(statuses, 429)
      assert.isAbove(Number(retryAfter), 0)
      for (let i = 0; i < 20; i++) {
        const health = yield* app.request("/monitoring/health", { auth: false })
        assert.strictEqual(health.status, 200)
      }
    }))

  it.effect("limits each client on /webhook with 429 and Retry-After", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const body = JSON.stringify({ object: "instagram", entry: [] })
      const statuses: Array<number> = []
      for (let i = 0; i < 30; i++) {
        const response = yield* app.request("/webhook", { method: "POST", auth: false, body, headers: signed(body) })
        statuses.push(response.status)
      }
      assert.strictEqual(statuses[0], 200)
      assert.include(statuses, 429)
      assert.isTrue(statuses.every((status) => status === 200 || status === 429))
    }))
})

layer(TestApp.layer("guard_body"), { excludeTestServices: true, timeout: "60 seconds" })("admin body limit", (it) => {
  it.effect("answers a 10 MB JSON body with 413, and stays up", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const huge = JSON.stringify({ name: "x".repeat(10 * 1024 * 1024), owner_id: "1", queue_name: "q.big" })
      const response = yield* app.request("/worker-apps/", {
        method: "POST",
        body: huge,
        headers: { "content-type": "application/json" }
      })
      assert.strictEqual(response.status, 413)
      const after = yield* app.request("/worker-apps/")
      assert.strictEqual(after.status, 200)
    }))

  it.effect("treats SQL-injection strings in every field, filter and path parameter as plain data", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const injection = `x'); DROP TABLE worker_apps; --`
      const created = yield* answered(client.workerApps.create({
        payload: { name: injection, owner_id: "4400000001", queue_name: "q.injection", description: injection }
      }))
      assert.strictEqual(created.status, 201)
      assert.strictEqual(created.body.name, injection)
      for (
        const [path, expected] of [
          [`/worker-apps/?owner_id=${encodeURIComponent(injection)}`, 422],
          [`/worker-apps/${encodeURIComponent(injection)}`, 422],
          [`/monitoring/webhook-logs?owner_id=${encodeURIComponent(injection)}`, 422],
          [`/monitoring/webhook-logs?cursor=${encodeURIComponent(injection)}`, 422],
          [`/monitoring/webhook-logs?status=${encodeURIComponent(injection)}`, 422]
        ] as const
      ) {
        const response = yield* app.request(path)
        assert.strictEqual(response.status, expected, path)
      }
      const replay = yield* answered(client.monitoring.replay({ payload: { owner_id: injection } }))
      assert.strictEqual(replay.status, 200)
      const update = yield* answered(client.workerApps.update({ params: { id: created.body.id }, payload: { description: injection } }))
      assert.strictEqual(update.status, 200)
      // The table is still there and holds the string as written.
      const list = yield* answered(client.workerApps.list({ query: {} }))
      assert.strictEqual(list.status, 200)
      assert.strictEqual(list.body.items[0]!.description, injection)
    }))
})
