import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import type { EventStatus } from "../../src/domain/WebhookLog.ts"
import { AdminClient, answered } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { JournalDb, TestApp } from "../support/TestApp.ts"
import { commentEvent, ENTRY_TIME, postWebhook, type SentEvent, uniqueId, webhookText } from "../support/Webhooks.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"


const eventIdOf = (event: SentEvent) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* eventually(
      sql<{ readonly event_id: string; readonly status: string }>`
        SELECT event_id, status FROM webhook_events WHERE value_raw = ${event.valueRaw}
      `.pipe(Effect.orDie),
      (rows) => rows.length === 1 && rows[0]?.status !== "pending"
    )
    assert.strictEqual(rows.length, 1)
    return rows[0]?.event_id ?? ""
  })

layer(
  Layer.mergeAll(JournalDb, Amqp.layer("eventdetail")).pipe(Layer.provideMerge(TestApp.layer("eventdetail"))),
  { excludeTestServices: true, timeout: "60 seconds" }
)("GET /monitoring/webhook-logs/{event_id}", (it) => {
  it.effect("shows one delivered event with its journal fields, attempts, delivery time and redeliveries", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const worker = yield* createWorkerApp("detail")
      const event = commentEvent(worker.owner_id)
      const body = webhookText([[event]])
      assert.strictEqual((yield* postWebhook(app, body)).status, 200)
      const eventId = yield* eventIdOf(event)
      // Meta's redelivery of the same change: counted on the event, not delivered again.
      assert.strictEqual((yield* postWebhook(app, body)).status, 200)

      const response = yield* answered((yield* AdminClient).monitoring.webhookLog({ params: { event_id: eventId } }))
      assert.strictEqual(response.status, 200)
      const shown = response.body
      assert.deepInclude(shown, {
        event_id: eventId,
        status: "routed",
        object: "instagram",
        field: "comments",
        entry_id: worker.owner_id,
        entry_time: ENTRY_TIME,
        media_id: event.mediaId,
        owner_id: worker.owner_id,
        worker_app_id: worker.id,
        attempts: 1,
        last_error: null,
        duplicates: 1,
        trace_id: null
      })
      assert.deepStrictEqual(shown.value, JSON.parse(event.valueRaw))
      assert.isNotNull(shown.delivered_at)
      assert.isAtLeast(Date.parse(shown.delivered_at ?? ""), Date.parse(shown.received_at))
    }))

  it.effect("404 for an unknown id, 422 for one that is not 64 hex digits, 401 without the token", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const unknown = "0".repeat(64)
      const missing = yield* app.request<unknown>(`/monitoring/webhook-logs/${unknown}`)
      assert.strictEqual(missing.status, 404, missing.text)
      assert.deepStrictEqual(missing.body, { detail: `no event ${unknown}` })
      const bad = yield* app.request<unknown>("/monitoring/webhook-logs/not-an-id")
      assert.strictEqual(bad.status, 422, bad.text)
      const anonymous = yield* app.request<unknown>(`/monitoring/webhook-logs/${unknown}`, { auth: false })
      assert.strictEqual(anonymous.status, 401, anonymous.text)
    }))

  it.effect("?owner_id= finds a pending event by its entry's account, and a routed one by its owner", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const sql = yield* SqlClient.SqlClient
      const worker = yield* createWorkerApp("owner")
      const routed = commentEvent(worker.owner_id)
      assert.strictEqual((yield* postWebhook(app, webhookText([[routed]]))).status, 200)
      const routedId = yield* eventIdOf(routed)

      // A pending event has no owner yet: park one (far lease, so no sweeper takes it) as it was journaled.
      const account = uniqueId()
      const pending = commentEvent(account)
      assert.strictEqual((yield* postWebhook(app, webhookText([[pending]]))).status, 200)
      const pendingId = yield* eventIdOf(pending)
      yield* sql`
        UPDATE webhook_events
        SET status = 'pending', owner_id = NULL, worker_app_id = NULL, lease_until = now() + interval '1 hour'
        WHERE event_id = ${pendingId}
      `.pipe(Effect.orDie)

      const list = (ownerId: string, status?: EventStatus) =>
        answered(client.monitoring.webhookLogs({ query: { owner_id: ownerId, ...(status === undefined ? {} : { status }) } })).pipe(
          Effect.map((response) => {
            assert.strictEqual(response.status, 200)
            return response.body.items.map((item) => ({ event_id: item.event_id, status: item.status }))
          })
        )
      assert.deepStrictEqual(yield* list(account), [{ event_id: pendingId, status: "pending" }])
      assert.deepStrictEqual(yield* list(account, "pending"), [{ event_id: pendingId, status: "pending" }])
      assert.deepStrictEqual(yield* list(worker.owner_id), [{ event_id: routedId, status: "routed" }])
      const detail = yield* client.monitoring.webhookLog({ params: { event_id: pendingId } })
      assert.deepInclude(detail, { status: "pending", owner_id: null, entry_id: account })
    }))
})
