import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { AdminClient, answered, makeAdminClient } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { parseExposition, sampleValue } from "../support/Prometheus.ts"
import { SECRET_KEY, TestApp } from "../support/TestApp.ts"
import { commentEvent, postWebhook, sign, webhookText } from "../support/Webhooks.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"
import {
  decode,
  environment,
  logs,
  type MetricEntry,
  metricsJson,
  metricsText,
  PipelineDetail,
  quiescent,
  replay,
  send,
  sendEach,
  settledRows
} from "../support/Monitoring.ts"

layer(environment("monitoring"), { excludeTestServices: true, timeout: "90 seconds" })("monitoring API", (it) => {
  it.effect("/monitoring/health needs no token and reports database, rabbitmq and the pipeline", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      for (const key of [null, "wrong", SECRET_KEY]) {
        const client = yield* makeAdminClient(app.baseUrl, key)
        const response = yield* answered(client.health.health())
        assert.strictEqual(response.status, 200)
        const health = response.body
        assert.isTrue(health.checks["database"]?.ok)
        assert.isTrue(health.checks["rabbitmq"]?.ok)
        assert.isTrue(health.checks["pipeline"]?.ok)
        assert.isAtLeast(decode(PipelineDetail)(health.checks["pipeline"]?.detail).in_flight, 0)
      }
    }))

  it.effect("every other monitoring route answers 401 without a bearer token or with a wrong one", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const routes: ReadonlyArray<readonly [string, string, unknown]> = [
        ["GET", "/metrics", undefined],
        ["GET", "/monitoring/metrics", undefined],
        ["GET", "/monitoring/webhook-logs", undefined],
        ["GET", "/monitoring/webhook-logs?status=routed&limit=5", undefined],
        ["GET", "/monitoring/queues", undefined],
        ["POST", `/monitoring/webhook-logs/${"a".repeat(64)}/replay`, undefined],
        ["POST", "/monitoring/replay", { owner_id: "1" }]
      ]
      const wrong = [false, "wrong", `${SECRET_KEY.slice(0, -1)}X`, `${SECRET_KEY}0`, ""] as const
      for (const [method, path, json] of routes) {
        for (const auth of wrong) {
          const response = yield* app.request<unknown>(path, { method, auth, json })
          assert.strictEqual(response.status, 401, `${method} ${path} auth=${String(auth)}`)
          assert.notInclude(response.text, "chatico_", `${method} ${path}`)
        }
        const basic = yield* app.request<unknown>(path, {
          method,
          auth: false,
          json,
          headers: { authorization: `Basic ${Buffer.from(`admin:${SECRET_KEY}`).toString("base64")}` }
        })
        assert.strictEqual(basic.status, 401, `${method} ${path} Basic`)
        // The right token opens the same route.
        const allowed = yield* app.request<unknown>(path, { method, json })
        assert.oneOf(allowed.status, [200, 404], `${method} ${path} with the token: ${allowed.text}`)
      }
    }))

  it.effect("/metrics is a valid exposition whose counters move by exactly what was sent", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("metrics")
      yield* quiescent
      const before = parseExposition(yield* metricsText)
      const read = (exposition: typeof before, name: string, labels: Record<string, string> = {}) =>
        sampleValue(exposition, name, labels) ?? 0

      // 4 webhooks with 1 + 2 + 1 + 3 = 7 events, then one repeated (1 duplicate), one unsigned, one not JSON.
      const owner = workerApp.owner_id
      const bodies = [1, 2, 1, 3].map((n) => Array.from({ length: n }, () => commentEvent(owner)))
      for (const events of bodies) yield* send([events])
      const sent = bodies.flat()
      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: sent.length })
      assert.strictEqual(messages.length, sent.length)
      yield* settledRows(sent)
      const repeated = yield* postWebhook(app, webhookText([bodies[0]!]))
      assert.strictEqual(repeated.status, 200, repeated.text)
      const unsigned = yield* postWebhook(app, webhookText([[commentEvent(owner)]]), { signature: "sha256=00" })
      assert.strictEqual(unsigned.status, 401)
      const notJson = "{\"object\": \"instagram\", \"entry\": ["
      const badRequest = yield* postWebhook(app, notJson, { signature: sign(notJson) })
      assert.strictEqual(badRequest.status, 400)
      yield* quiescent

      const text = yield* metricsText
      const after = parseExposition(text)
      const delta = (name: string, labels: Record<string, string> = {}) => {
        assert.isDefined(sampleValue(after, name, labels), `${name} ${JSON.stringify(labels)} is exposed`)
        return read(after, name, labels) - read(before, name, labels)
      }
      assert.strictEqual(after.get("chatico_webhooks_total")?.type, "counter")
      assert.strictEqual(after.get("chatico_events_total")?.type, "counter")
      assert.strictEqual(after.get("chatico_accept_latency_seconds")?.type, "histogram")
      assert.strictEqual(delta("chatico_webhooks_total", { result: "accepted" }), bodies.length + 1)
      assert.strictEqual(delta("chatico_webhooks_total", { result: "unauthorized" }), 1)
      assert.strictEqual(delta("chatico_webhooks_total", { result: "bad_request" }), 1)
      assert.strictEqual(delta("chatico_events_total", { outcome: "accepted" }), sent.length)
      assert.strictEqual(delta("chatico_events_total", { outcome: "routed" }), sent.length)
      assert.strictEqual(delta("chatico_events_total", { outcome: "duplicate" }), bodies[0]!.length)
      assert.strictEqual(delta("chatico_routed_events_total", { worker_app_id: workerApp.id }), sent.length)
      assert.strictEqual(delta("chatico_accept_latency_seconds_count"), bodies.length + 1)
      assert.strictEqual(delta("chatico_delivery_latency_seconds_count"), sent.length)
      assert.isAtLeast(delta("chatico_publish_confirm_latency_seconds_count"), sent.length)
      assert.strictEqual(sampleValue(after, "chatico_pending_events"), 0)
      for (const stage of ["journal", "delivery"]) {
        assert.strictEqual(sampleValue(after, "chatico_mailbox_depth", { stage }), 0, stage)
      }
    }))

  it.effect("/monitoring/metrics answers JSON with the same counter and histogram values as /metrics", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("metrics-json")
      // At least one of each kind exists: counters, gauges and histograms with observations.
      const events = yield* sendEach(workerApp.owner_id, 2)
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 2 })).length, 2)
      yield* settledRows(events)
      yield* quiescent
      // The JSON is rendered from the same metrics: every chatico counter and histogram agrees.
      const json = yield* metricsJson
      const again = parseExposition(yield* metricsText)
      let compared = 0
      for (const family of again.values()) {
        if (!family.name.startsWith("chatico_") || (family.type !== "counter" && family.type !== "histogram")) continue
        const entries = json[family.name]
        assert.isDefined(entries, `${family.name} in the JSON`)
        const series = family.samples.filter((s) =>
          family.type === "counter" ? s.name === family.name : s.name === `${family.name}_count`
        )
        assert.strictEqual(entries?.length, series.length, family.name)
        for (const sample of series) {
          const entry: MetricEntry | undefined = entries?.find((e: MetricEntry) =>
            Object.keys(e.attributes).length === Object.keys(sample.labels).length &&
            Object.entries(sample.labels).every(([k, v]) => e.attributes[k] === v)
          )
          assert.isDefined(entry, `${family.name} ${JSON.stringify(sample.labels)} in the JSON`)
          assert.strictEqual(entry?.count, sample.value, `${family.name} ${JSON.stringify(sample.labels)}`)
          if (family.type === "histogram") {
            assert.strictEqual(entry?.sum, sampleValue(again, `${family.name}_sum`, sample.labels), family.name)
          }
          compared++
        }
      }
      assert.isAtLeast(compared, 8)
      const accepted = json["chatico_webhooks_total"]?.find((e) => e.attributes["result"] === "accepted")
      assert.strictEqual(accepted?.count, sampleValue(again, "chatico_webhooks_total", { result: "accepted" }))
    }))


  it.effect("/monitoring/queues reports each worker app's queue and dead-letter queue, and unroutable", () =>
    Effect.gen(function*() {
      const client = yield* AdminClient
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("queues")
      const deadLetterQueue = `${workerApp.queue_name}.dlq`
      // Two refused by the worker app (dead-lettered by RabbitMQ), then three left waiting.
      yield* sendEach(workerApp.owner_id, 2)
      assert.strictEqual((yield* amqp.rejectMessages(workerApp.queue_name, { expected: 2 })).length, 2)
      yield* eventually(amqp.queueMessageCount(deadLetterQueue), (n) => n === 2)
      const waiting = yield* sendEach(workerApp.owner_id, 3)
      yield* settledRows(waiting)
      yield* eventually(amqp.queueMessageCount(workerApp.queue_name), (n) => n === 3)

      const report = yield* eventually(
        client.monitoring.queues({ query: {} }),
        (r) => r.items.some((i) => i.worker_app_id === workerApp.id && i.queue?.messages === 3 && i.dead_letter_queue?.messages === 2)
      )
      const item = report.items.find((i) => i.worker_app_id === workerApp.id)
      assert.deepStrictEqual(item, {
        worker_app_id: workerApp.id,
        name: workerApp.queue_name,
        owner_id: workerApp.owner_id,
        is_active: true,
        queue_name: workerApp.queue_name,
        queue: { messages: 3, consumers: 0 },
        dead_letter_queue: { messages: 2, consumers: 0 }
      })
      assert.strictEqual(yield* amqp.queueMessageCount(workerApp.queue_name), 3)
      assert.strictEqual(yield* amqp.queueMessageCount(deadLetterQueue), 2)
      assert.isNull(report.broker_error)
      assert.isNotNull(report.unroutable)
      assert.isAtLeast(report.unroutable?.messages ?? -1, 0)
      // Every worker app of this database is listed, once.
      const listed = report.items.map((i) => i.worker_app_id)
      assert.strictEqual(new Set(listed).size, listed.length)
      const total = (yield* client.workerApps.list({ query: { limit: 500 } })).total
      assert.strictEqual(listed.length, total)

      // Consumed, the counts follow.
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 3 })).length, 3)
      const drained = yield* eventually(
        client.monitoring.queues({ query: {} }),
        (r) => r.items.some((i) => i.worker_app_id === workerApp.id && i.queue?.messages === 0)
      )
      assert.deepStrictEqual(
        drained.items.find((i) => i.worker_app_id === workerApp.id)?.queue,
        { messages: 0, consumers: 0 }
      )
    }))
})
