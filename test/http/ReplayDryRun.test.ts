import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { AdminClient, answered } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { JournalDb, TestApp } from "../support/TestApp.ts"
import { commentEvent, postWebhook, webhookText } from "../support/Webhooks.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"

const environment = Layer.mergeAll(JournalDb, Amqp.layer("dry_run")).pipe(Layer.provideMerge(TestApp.layer("dry_run")))

layer(environment, { excludeTestServices: true, timeout: "90 seconds" })("POST /monitoring/replay with dry_run", (it) => {
  it.effect("counts what would be queued, per worker app, and changes nothing; without it the same filter queues that many", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const sql = yield* SqlClient.SqlClient
      const [first, second] = [yield* createWorkerApp("dry-a"), yield* createWorkerApp("dry-b")]
      const events = [commentEvent(first.owner_id), commentEvent(first.owner_id), commentEvent(second.owner_id)]
      assert.strictEqual((yield* postWebhook(app, webhookText(events.map((e) => [e])))).status, 200)
      assert.strictEqual((yield* amqp.drainQueue(first.queue_name, { expected: 2, firstMessageMs: 30_000 })).length, 2)
      assert.strictEqual((yield* amqp.drainQueue(second.queue_name, { expected: 1, firstMessageMs: 30_000 })).length, 1)
      const routed = (id: string) =>
        sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events WHERE worker_app_id = ${id} AND status = 'routed'`
          .pipe(Effect.orDie, Effect.map((rows) => rows[0]?.n ?? 0))
      assert.strictEqual(yield* eventually(routed(first.id), (n) => n === 2), 2)

      const client = yield* AdminClient
      const dry = yield* answered(client.monitoring.replay({ payload: { worker_app_id: first.id, dry_run: true } }))
      assert.strictEqual(dry.status, 200)
      assert.deepStrictEqual(dry.body, { queued: 2, more: false })
      const byStatus = yield* client.monitoring.replay({ payload: { status: "dead_lettered", worker_app_id: first.id, dry_run: true } })
      assert.deepStrictEqual(byStatus, { queued: 0, more: false })
      // Nothing moved: both are still routed and no message was published.
      assert.strictEqual(yield* routed(first.id), 2)
      assert.strictEqual(yield* amqp.queueMessageCount(first.queue_name), 0)

      const real = yield* client.monitoring.replay({ payload: { worker_app_id: first.id, dry_run: false } })
      assert.deepStrictEqual(real, { queued: 2, more: false })
      assert.strictEqual((yield* amqp.drainQueue(first.queue_name, { expected: 2, firstMessageMs: 30_000 })).length, 2)
      assert.strictEqual(yield* amqp.queueMessageCount(second.queue_name), 0)

      const bad = yield* app.request("/monitoring/replay", { method: "POST", json: { worker_app_id: "not-a-uuid", dry_run: true } })
      assert.strictEqual(bad.status, 422)
    }))
})
