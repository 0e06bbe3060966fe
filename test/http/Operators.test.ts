import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { parseExposition, sampleValue } from "../support/Prometheus.ts"
import { tapLogLines } from "../support/SecretWatch.ts"
import { JournalDb, TestApp, VERIFY_TOKEN } from "../support/TestApp.ts"
import { commentEvent, postWebhook, sign, uniqueId, webhookText } from "../support/Webhooks.ts"
import { AdminClient, answered, problemsOf } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { eventually } from "../support/WorkerApps.ts"


const Line = Schema.Struct({ message: Schema.String, level: Schema.String, annotations: Schema.Record(Schema.String, Schema.Unknown) })
type Line = typeof Line.Type
const parseLines = (lines: ReadonlyArray<string>): ReadonlyArray<Line> =>
  lines.map((line) => Schema.decodeUnknownSync(Line)(JSON.parse(line)))


layer(
  Layer.mergeAll(JournalDb, Amqp.layer("operators")).pipe(
    Layer.provideMerge(TestApp.layer("operators", {
      logLevel: "Info",
      pendingAgeAlert: Duration.seconds(30),
      unroutableQueue: "ops.unroutable",
      // No access token: the Graph API check passes with a warning, never ok next to an error.
      ownerResolution: "auto"
    }))
  ),
  { excludeTestServices: true, timeout: "60 seconds" }
)("what an operator meets", (it) => {
  it.effect("every error is {\"detail\": …}: 404, 405 with Allow, 401 with WWW-Authenticate, 413, 415", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const unknown = yield* app.request("/no-such-route")
      assert.strictEqual(unknown.status, 404)
      assert.deepStrictEqual(unknown.body, { detail: "Not Found" })
      assert.match(unknown.headers.get("content-type") ?? "", /^application\/json/)

      const wrongMethod = yield* app.request("/worker-apps/", { method: "PATCH" })
      assert.strictEqual(wrongMethod.status, 405)
      assert.deepStrictEqual(wrongMethod.body, { detail: "Method Not Allowed" })
      assert.deepStrictEqual(wrongMethod.headers.get("allow")?.split(", ").sort(), ["GET", "HEAD", "POST"])
      const webhookDelete = yield* app.request("/webhook", { method: "DELETE", auth: false })
      assert.strictEqual(webhookDelete.status, 405)
      assert.deepStrictEqual(webhookDelete.headers.get("allow")?.split(", ").sort(), ["GET", "HEAD", "POST"])
      const consoleDelete = yield* app.request("/console/events/abc", { method: "DELETE", auth: false })
      assert.strictEqual(consoleDelete.status, 405)
      assert.deepStrictEqual(consoleDelete.headers.get("allow")?.split(", ").sort(), ["GET", "HEAD"])

      const anonymous = yield* app.request("/worker-apps/", { auth: false })
      assert.strictEqual(anonymous.status, 401)
      assert.deepStrictEqual(anonymous.body, { detail: "missing or invalid bearer token" })
      assert.strictEqual(anonymous.headers.get("www-authenticate"), "Bearer")

      const tooLarge = yield* app.request("/worker-apps/", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "x".repeat(70 * 1024) })
      })
      assert.strictEqual(tooLarge.status, 413)
      assert.deepStrictEqual(tooLarge.body, { detail: "Payload Too Large" })

      const wrongType = yield* app.request("/worker-apps/", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "name=x"
      })
      assert.strictEqual(wrongType.status, 415)
      assert.deepStrictEqual(wrongType.body, { detail: "Unsupported content-type: text/plain" })

      const refusedVerify = yield* app.request("/webhook?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", { auth: false })
      assert.strictEqual(refusedVerify.status, 403)
      assert.deepStrictEqual(refusedVerify.body, { detail: "verification failed" })
    }))

  it.effect("a 422 lists every problem at once, unknown fields and query parameters included", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const created = yield* app.request<unknown>("/worker-apps/", { method: "POST", json: { name: "", extra: 1 } })
      assert.strictEqual(created.status, 422, created.text)
      assert.deepStrictEqual(problemsOf(created.body), [
        { loc: ["body", "extra"], msg: "Extra inputs are not permitted", type: "extra_forbidden" },
        { loc: ["body", "name"], msg: "must not be empty", type: "value_error" },
        { loc: ["body", "name"], msg: "must not be blank", type: "value_error" },
        { loc: ["body", "owner_id"], msg: "Field required", type: "missing" },
        { loc: ["body", "queue_name"], msg: "Field required", type: "missing" }
      ])
      const logs = yield* app.request<unknown>("/monitoring/webhook-logs?foo=1&status=nope&limit=0")
      assert.strictEqual(logs.status, 422, logs.text)
      assert.deepStrictEqual(problemsOf(logs.body).map((issue) => [issue.loc.join("."), issue.type]), [
        ["query.foo", "extra_forbidden"],
        ["query.status", "value_error"],
        ["query.limit", "value_error"]
      ])
      // A filter the service refuses has the same shape.
      const replay = yield* app.request<unknown>("/monitoring/replay", { method: "POST", json: {} })
      assert.strictEqual(replay.status, 422, replay.text)
      assert.deepStrictEqual(problemsOf(replay.body), [
        { loc: ["body"], msg: "give at least one of status, owner_id, worker_app_id, since, until", type: "value_error" }
      ])
    }))

  it.effect("is_active accepts true, false, 1 and 0 in any case", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const amqp = yield* Amqp
      const queue = amqp.queueName("active")
      const made = yield* answered(client.workerApps.create({
        payload: { name: queue, owner_id: uniqueId(), queue_name: queue, is_active: false }
      }))
      assert.strictEqual(made.status, 201)
      const ids = (value: string) =>
        answered(client.workerApps.list({ query: { is_active: value } })).pipe(
          Effect.map((response) => {
            assert.strictEqual(response.status, 200, value)
            return response.body.items.map((item) => item.id)
          })
        )
      for (const value of ["false", "FALSE", "0", "False"]) assert.include(yield* ids(value), made.body.id, value)
      for (const value of ["true", "TRUE", "1"]) assert.notInclude(yield* ids(value), made.body.id, value)
      const bad = yield* app.request("/worker-apps/?is_active=yes")
      assert.strictEqual(bad.status, 422)
    }))

  it.effect("queue names: amq. and chatico. are reserved in any case, and so is UNROUTABLE_QUEUE", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      for (const queue of ["amq.x", "AMQ.x", "Amq.x", "chatico.x", "CHATICO.unroutable", "ops.unroutable", "OPS.Unroutable"]) {
        const response = yield* app.request<unknown>("/worker-apps/", {
          method: "POST",
          json: { name: `n-${uniqueId()}`, owner_id: uniqueId(), queue_name: queue }
        })
        assert.strictEqual(response.status, 422, queue)
        assert.deepStrictEqual(problemsOf(response.body).map((issue) => issue.loc.join(".")), ["body.queue_name"], queue)
      }
    }))

  it.effect("GET / redirects to /docs", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const root = yield* app.request("/", { auth: false, redirect: "manual" })
      assert.strictEqual(root.status, 307)
      assert.strictEqual(root.headers.get("location"), "/docs")
    }))

  it.effect("one access line per request; refused webhooks say which check failed; admin changes are audited", () => {
    const tap = tapLogLines()
    return Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const body = webhookText([[commentEvent(uniqueId())]])
      assert.strictEqual((yield* postWebhook(app, body)).status, 200)
      assert.strictEqual((yield* postWebhook(app, body)).status, 200)
      assert.strictEqual((yield* postWebhook(app, body, { signature: null })).status, 401)
      assert.strictEqual((yield* postWebhook(app, body, { signature: "sha256=abc" })).status, 401)
      assert.strictEqual((yield* postWebhook(app, body, { signature: sign(body, "another-key") })).status, 401)
      assert.strictEqual((yield* postWebhook(app, "not json", { signature: sign("not json") })).status, 400)
      yield* app.request(`/webhook?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}`, { auth: false })
      const client = yield* AdminClient
      const queue = amqp.queueName("audited")
      const made = yield* client.workerApps.create({ payload: { name: queue, owner_id: uniqueId(), queue_name: queue } })
      yield* client.workerApps.toggle({ params: { id: made.id } })
      yield* client.workerApps.update({ params: { id: made.id }, payload: { description: "audited" } })
      yield* client.workerApps.remove({ params: { id: made.id } })
      yield* client.monitoring.replay({ payload: { status: "dead_lettered" } })

      const lines = parseLines(tap.lines)
      const access = lines.filter((line) => line.message === "request")
      const webhooks = access.filter((line) => line.annotations["route"] === "/webhook" && line.annotations["method"] === "POST")
      assert.deepStrictEqual(
        webhooks.map((line) => [line.annotations["status"], line.annotations["events"], line.annotations["duplicates"]]),
        [[200, 1, 0], [200, 1, 1], [401, undefined, undefined], [401, undefined, undefined], [401, undefined, undefined], [400, undefined, undefined]]
      )
      for (const line of access) {
        assert.strictEqual(line.level, "INFO")
        assert.strictEqual(line.annotations["client"], "127.0.0.1")
        assert.isNumber(line.annotations["duration_ms"])
      }
      assert.isTrue(access.some((line) => line.annotations["route"] === "/worker-apps/{id}/toggle" && line.annotations["status"] === 200))

      const refused = lines.filter((line) => line.message === "webhook refused").map((line) => line.annotations["reason"])
      assert.deepStrictEqual(refused.slice(0, 3), [
        "no X-Hub-Signature-256",
        "X-Hub-Signature-256 is not sha256=<64 lowercase hex digits>",
        "signature does not match any configured key"
      ])
      assert.match(String(refused[3]), /JSON/i)
      const verification = lines.find((line) => line.message === "webhook verification refused")
      assert.strictEqual(verification?.annotations["reason"], "no hub.challenge")

      const audits = lines.filter((line) => line.message === "audit")
      assert.deepStrictEqual(audits.map((line) => line.annotations["audit"]), [
        "worker_app.created",
        "worker_app.toggled",
        "worker_app.updated",
        "worker_app.deleted",
        "replay.requested"
      ])
      for (const line of audits) assert.strictEqual(line.annotations["client"], "127.0.0.1")
      assert.deepInclude(audits[4]?.annotations ?? {}, { filter: { status: "dead_lettered" }, queued: 0, more: false })
    }).pipe(Effect.ensuring(Effect.sync(tap.stop)))
  })

  it.effect("/metrics has the process metrics and http_requests_total by route and status", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      yield* app.request("/no-such-route")
      yield* app.request("/worker-apps/")
      const response = yield* app.request("/metrics")
      assert.strictEqual(response.status, 200)
      const exposition = parseExposition(response.text)
      for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "nodejs_eventloop_lag_seconds", "nodejs_heap_size_used_bytes"]) {
        assert.isAbove(sampleValue(exposition, name) ?? -1, name === "nodejs_eventloop_lag_seconds" ? -1 : 0, name)
      }
      assert.strictEqual(exposition.get("process_cpu_seconds_total")?.type, "counter")
      assert.isAtLeast(sampleValue(exposition, "http_requests_total", { route: "unmatched", status: "404" }) ?? 0, 1)
      assert.isAtLeast(sampleValue(exposition, "http_requests_total", { route: "/worker-apps", status: "200" }) ?? 0, 1)
      assert.isAtLeast(sampleValue(exposition, "http_request_duration_seconds_count", { route: "/worker-apps" }) ?? 0, 1)
    }))

  it.effect("health is degraded, naming the backlog, while a pending event is older than PENDING_AGE_ALERT", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const sql = yield* SqlClient.SqlClient
      // Raw: the 503's body on the wire is checked too (no `_tag`).
      const health = () => app.request<{ readonly status: string; readonly failing?: ReadonlyArray<string>; readonly checks: Record<string, { readonly ok: boolean; readonly error?: string }> }>("/monitoring/health", { auth: false })
      const before = yield* health()
      assert.strictEqual(before.status, 200, before.text)
      assert.isTrue(before.body.checks["backlog"]?.ok)
      for (const check of Object.values(before.body.checks)) if (check.ok) assert.isUndefined(check.error)
      assert.deepInclude(before.body.checks["graph_api"] ?? {}, {
        ok: true,
        warning: "INSTAGRAM_ACCESS_TOKEN is not set: OWNER_RESOLUTION=auto routes by entry[].id only"
      })

      const event = commentEvent(uniqueId())
      assert.strictEqual((yield* postWebhook(app, webhookText([[event]]))).status, 200)
      yield* eventually(
        sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events WHERE value_raw = ${event.valueRaw} AND status <> 'pending'`.pipe(Effect.orDie),
        (rows) => rows[0]?.n === 1
      )
      // Back to pending, received a minute ago, leased far away so nothing delivers it meanwhile.
      yield* sql`
        UPDATE webhook_events SET status = 'pending', received_at = now() - interval '1 minute', lease_until = now() + interval '1 hour'
        WHERE value_raw = ${event.valueRaw}
      `.pipe(Effect.orDie)
      const degraded = yield* health()
      assert.strictEqual(degraded.status, 503, degraded.text)
      assert.strictEqual(degraded.body.status, "degraded")
      assert.deepStrictEqual(degraded.body.failing, ["backlog"])
      assert.match(degraded.body.checks["backlog"]?.error ?? "", /^a pending event has waited \d+ s \(PENDING_AGE_ALERT is 30s\)$/)
      assert.notProperty(degraded.body, "_tag")
      yield* sql`DELETE FROM webhook_events WHERE value_raw = ${event.valueRaw}`.pipe(Effect.orDie)
      assert.strictEqual((yield* health()).status, 200)
    }))
})
