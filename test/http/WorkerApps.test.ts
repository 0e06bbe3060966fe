import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { WorkerApp, WorkerAppConflict, type WorkerAppCreate, WorkerAppId } from "../../src/domain/WorkerApp.ts"
import { AdminClient, answered, locsOf, makeAdminClient, refused } from "../support/AdminClient.ts"
import { TestApp } from "../support/TestApp.ts"

let counter = 0
const unique = () => {
  counter += 1
  return { name: `app-${counter}`, owner_id: `1784140000${counter}`, queue_name: `wa.test.q${counter}` }
}

const create = (payload: WorkerAppCreate) =>
  Effect.flatMap(AdminClient, (client) => answered(client.workerApps.create({ payload })))

// The client's paths have no trailing slash: the slashed forms are sent as written.
const decodeApp = Schema.decodeUnknownSync(WorkerApp)

layer(TestApp.layer("worker_apps"), { excludeTestServices: true, timeout: "60 seconds" })("worker apps admin API", (it) => {
  it.effect("creates an app with defaults and reads it back, with and without the trailing slash", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const input = unique()
      const created = yield* create(input)
      assert.strictEqual(created.status, 201)
      assert.deepInclude(created.body, { ...input, is_active: true, description: null })
      assert.match(created.body.id, /^[0-9a-f-]{36}$/)
      assert.isFalse(Number.isNaN(Date.parse(created.body.created_at)))
      const got = yield* answered(client.workerApps.get({ params: { id: created.body.id } }))
      assert.strictEqual(got.status, 200)
      assert.deepStrictEqual(got.body, created.body)
      const gotSlash = yield* app.request(`/worker-apps/${created.body.id}/`)
      assert.strictEqual(gotSlash.status, 200)
      const slash = yield* app.request("/worker-apps/", { method: "POST", json: unique() })
      assert.strictEqual(slash.status, 201)
    }))

  it.effect("creates with a description and inactive", () =>
    Effect.gen(function*() {
      const created = yield* create({ ...unique(), description: "for comments", is_active: false })
      assert.strictEqual(created.status, 201)
      assert.strictEqual(created.body.description, "for comments")
      assert.isFalse(created.body.is_active)
    }))

  it.effect("lists with each filter and pages", () =>
    Effect.gen(function*() {
      const client = yield* AdminClient
      const list = (query: Parameters<typeof client.workerApps.list>[0]["query"]) =>
        answered(client.workerApps.list({ query }))
      const a = yield* create({ ...unique(), is_active: true })
      const b = yield* create({ ...unique(), is_active: false })
      const all = yield* list({ limit: 500 })
      assert.strictEqual(all.status, 200)
      assert.strictEqual(all.body.total, all.body.items.length)
      assert.isTrue(all.body.items.some((w) => w.id === a.body.id))

      const active = yield* list({ is_active: "true", limit: 500 })
      assert.isTrue(active.body.items.every((w) => w.is_active))
      assert.isTrue(active.body.items.some((w) => w.id === a.body.id))
      const inactive = yield* list({ is_active: "false", limit: 500 })
      assert.isTrue(inactive.body.items.every((w) => !w.is_active))
      assert.isTrue(inactive.body.items.some((w) => w.id === b.body.id))
      assert.strictEqual(active.body.total + inactive.body.total, all.body.total)

      const byOwner = yield* list({ owner_id: b.body.owner_id })
      assert.deepStrictEqual(byOwner.body, { items: [b.body], total: 1 })

      const page1 = yield* list({ limit: 1, offset: 0 })
      const page2 = yield* list({ limit: 1, offset: 1 })
      assert.strictEqual(page1.body.items.length, 1)
      assert.strictEqual(page2.body.items.length, 1)
      assert.notStrictEqual(page1.body.items[0]!.id, page2.body.items[0]!.id)
      assert.strictEqual(page1.body.total, all.body.total)
      const beyond = yield* list({ offset: all.body.total })
      assert.deepStrictEqual(beyond.body.items, [])
    }))

  it.effect("updates each field, alone and together", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const created = yield* create(unique())
      const id = created.body.id
      const next = unique()
      for (
        const change of [
          { name: next.name },
          { owner_id: next.owner_id },
          { queue_name: next.queue_name },
          { description: "now described" },
          { description: null },
          { is_active: false }
        ]
      ) {
        const updated = yield* answered(client.workerApps.update({ params: { id }, payload: change }))
        assert.strictEqual(updated.status, 200, JSON.stringify(change))
        assert.deepInclude(updated.body, change)
      }
      const both = yield* app.request(`/worker-apps/${id}/`, {
        method: "PUT",
        json: { name: `${next.name}-b`, is_active: true }
      })
      assert.strictEqual(both.status, 200)
      const bothApp = decodeApp(both.body)
      assert.deepInclude(bothApp, { ...next, name: `${next.name}-b`, is_active: true, description: null })
      assert.isTrue(Date.parse(bothApp.updated_at) >= Date.parse(created.body.updated_at))
      const empty = yield* answered(client.workerApps.update({ params: { id }, payload: {} }))
      assert.strictEqual(empty.status, 200)
      assert.strictEqual(empty.body.name, `${next.name}-b`)
    }))

  it.effect("toggles and deletes", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const created = yield* create(unique())
      const id = created.body.id
      const off = yield* answered(client.workerApps.toggle({ params: { id } }))
      assert.strictEqual(off.status, 200)
      assert.isFalse(off.body.is_active)
      const on = yield* app.request(`/worker-apps/${id}/toggle/`, { method: "POST" })
      assert.isTrue(decodeApp(on.body).is_active)
      // Raw: the 204 must have an empty body.
      const deleted = yield* app.request(`/worker-apps/${id}`, { method: "DELETE" })
      assert.strictEqual(deleted.status, 204)
      assert.strictEqual(deleted.text, "")
      const gone = yield* refused(client.workerApps.get({ params: { id } }))
      assert.strictEqual(gone.status, 404)
      const again = yield* app.request(`/worker-apps/${id}/`, { method: "DELETE" })
      assert.strictEqual(again.status, 404)
    }))

  it.effect("answers 404 for an unknown id on every route", () =>
    Effect.gen(function*() {
      const client = yield* AdminClient
      const id = WorkerAppId.make("00000000-0000-4000-8000-000000000000")
      const calls: ReadonlyArray<readonly [string, Effect.Effect<unknown, unknown>]> = [
        [`GET /worker-apps/${id}`, client.workerApps.get({ params: { id } })],
        [`PUT /worker-apps/${id}`, client.workerApps.update({ params: { id }, payload: { name: "x" } })],
        [`DELETE /worker-apps/${id}`, client.workerApps.remove({ params: { id } })],
        [`POST /worker-apps/${id}/toggle`, client.workerApps.toggle({ params: { id } })]
      ]
      for (const [route, call] of calls) {
        const response = yield* refused(call)
        assert.strictEqual(response.status, 404, route)
      }
    }))

  it.effect("answers 401 without a token, with a wrong one, one differing in the last character, or Basic", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const created = yield* create(unique())
      const paths = [
        ["GET", "/worker-apps/"],
        ["POST", "/worker-apps/"],
        ["GET", `/worker-apps/${created.body.id}`],
        ["PUT", `/worker-apps/${created.body.id}`],
        ["DELETE", `/worker-apps/${created.body.id}`],
        ["POST", `/worker-apps/${created.body.id}/toggle`]
      ] as const
      for (const [method, path] of paths) {
        for (const auth of [false, "wrong", "test-secret-key-012345678X", ""] as const) {
          const response = yield* app.request(path, { method, auth, json: method === "GET" || method === "DELETE" ? undefined : unique() })
          assert.strictEqual(response.status, 401, `${method} ${path} auth=${auth}`)
        }
        const basic = yield* app.request(path, {
          method,
          auth: false,
          headers: { authorization: `Basic ${Buffer.from("admin:test-secret-key-0123456789").toString("base64")}` }
        })
        assert.strictEqual(basic.status, 401)
      }
      // Nothing changed behind the 401s.
      const still = yield* (yield* AdminClient).workerApps.get({ params: { id: created.body.id } })
      assert.deepStrictEqual(still, created.body)
    }))

  it.effect("answers 422 naming the field for each invalid input", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
        [{ ...unique(), owner_id: "12ab" }, "body.owner_id"],
        [{ ...unique(), owner_id: "" }, "body.owner_id"],
        [{ ...unique(), owner_id: 1784 }, "body.owner_id"],
        [{ ...unique(), queue_name: "has space" }, "body.queue_name"],
        [{ ...unique(), queue_name: "" }, "body.queue_name"],
        [{ ...unique(), queue_name: "x".repeat(201) }, "body.queue_name"],
        [{ ...unique(), queue_name: "amq.reserved" }, "body.queue_name"],
        [{ ...unique(), queue_name: "chatico.mine" }, "body.queue_name"],
        [{ ...unique(), name: "" }, "body.name"],
        [{ ...unique(), name: "   " }, "body.name"],
        [{ ...unique(), name: 7 }, "body.name"],
        [{ ...unique(), is_active: "yes" }, "body.is_active"],
        [{ ...unique(), description: 3 }, "body.description"],
        [{ owner_id: "1", queue_name: "q.missing.name" }, "body.name"],
        [{ name: "no-owner", queue_name: "q.missing.owner" }, "body.owner_id"],
        [{ name: "no-queue", owner_id: "2" }, "body.queue_name"]
      ]
      for (const [body, loc] of cases) {
        const response = yield* app.request("/worker-apps/", { method: "POST", json: body })
        assert.strictEqual(response.status, 422, JSON.stringify(body))
        assert.include(locsOf(response.body), loc, JSON.stringify(response.body))
      }
      const created = yield* create(unique())
      const badUpdate = yield* app.request(`/worker-apps/${created.body.id}`, {
        method: "PUT",
        json: { queue_name: "amq.nope" }
      })
      assert.strictEqual(badUpdate.status, 422)
      assert.include(locsOf(badUpdate.body), "body.queue_name")
      const nullActive = yield* app.request(`/worker-apps/${created.body.id}`, {
        method: "PUT",
        json: { is_active: null }
      })
      assert.strictEqual(nullActive.status, 422)

      for (const path of ["/worker-apps/not-a-uuid", "/worker-apps/123/toggle"]) {
        const response = yield* app.request(path, { method: path.endsWith("toggle") ? "POST" : "GET" })
        assert.strictEqual(response.status, 422, path)
        assert.include(locsOf(response.body), "path.id")
      }
      for (
        const [query, loc] of [
          ["limit=0", "query.limit"],
          ["limit=501", "query.limit"],
          ["limit=abc", "query.limit"],
          ["offset=-1", "query.offset"],
          ["is_active=maybe", "query.is_active"],
          ["owner_id=abc", "query.owner_id"]
        ] as const
      ) {
        const response = yield* app.request(`/worker-apps/?${query}`)
        assert.strictEqual(response.status, 422, query)
        assert.include(locsOf(response.body), loc)
      }
      const notJson = yield* app.request("/worker-apps/", {
        method: "POST",
        body: "{not json",
        headers: { "content-type": "application/json" }
      })
      assert.oneOf(notJson.status, [400, 422])
    }))

  it.effect("answers 409 for each unique field, on create and on update", () =>
    Effect.gen(function*() {
      const client = yield* AdminClient
      const first = yield* create(unique())
      for (const field of ["name", "owner_id", "queue_name"] as const) {
        const response = yield* refused(client.workerApps.create({ payload: { ...unique(), [field]: first.body[field] } }))
        assert.strictEqual(response.status, 409, field)
        assert.instanceOf(response.error, WorkerAppConflict)
        assert.strictEqual(response.error.field, field)
      }
      const second = yield* create(unique())
      for (const field of ["name", "owner_id", "queue_name"] as const) {
        const response = yield* refused(client.workerApps.update({
          params: { id: second.body.id },
          payload: { [field]: first.body[field] }
        }))
        assert.strictEqual(response.status, 409, field)
      }
    }))

  it.effect("publishes the OpenAPI document, Swagger UI and ReDoc", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const spec = yield* app.request<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
        "/openapi.json",
        { auth: false }
      )
      assert.strictEqual(spec.status, 200)
      assert.match(spec.body.openapi, /^3\.1/)
      const routes = Object.entries(spec.body.paths).flatMap(([path, methods]) =>
        Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`)
      )
      for (
        const route of [
          "GET /webhook",
          "POST /webhook",
          "GET /metrics",
          "GET /monitoring/metrics",
          "GET /monitoring/webhook-logs",
          "GET /monitoring/queues",
          "POST /monitoring/webhook-logs/{event_id}/replay",
          "POST /monitoring/replay",
          "POST /worker-apps",
          "GET /worker-apps",
          "GET /worker-apps/{id}",
          "PUT /worker-apps/{id}",
          "DELETE /worker-apps/{id}",
          "POST /worker-apps/{id}/toggle",
          "GET /monitoring/health"
        ]
      ) assert.include(routes, route)
      const docs = yield* app.request("/docs", { auth: false })
      assert.strictEqual(docs.status, 200)
      assert.include(docs.text, "swagger")
      const redoc = yield* app.request("/redoc", { auth: false })
      assert.strictEqual(redoc.status, 200)
      assert.include(redoc.text, "/openapi.json")
    }))

  it.effect("reports the database in /monitoring/health without auth", () =>
    Effect.gen(function*() {
      const anonymous = yield* makeAdminClient((yield* TestApp).baseUrl, null)
      const health = yield* answered(anonymous.health.health())
      assert.strictEqual(health.status, 200)
      assert.strictEqual(health.body.status, "ok")
      assert.isTrue(health.body.checks["database"]?.ok)
    }))
})

