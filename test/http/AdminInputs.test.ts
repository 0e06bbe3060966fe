import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { AdminClient, answered, locsOf, refused } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { TestApp } from "../support/TestApp.ts"
import { uniqueId } from "../support/Webhooks.ts"

// Regression tests of issue 13's admin and monitoring defects: bad input once answered
// `503 DatabaseUnavailable`, or was taken for something else.

const NUL = "\u0000"

layer(Layer.mergeAll(Amqp.layer("admin_inputs")).pipe(Layer.provideMerge(TestApp.layer("admin_inputs"))), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("admin and monitoring input", (it) => {
  const fresh = (label: string) =>
    Effect.map(Amqp, (amqp) => ({ name: `${label}-${uniqueId()}`, owner_id: uniqueId(), queue_name: amqp.queueName(`${label}-${uniqueId()}`) }))

  it.effect("defect 5: U+0000 in a worker app's name or description is a 422 naming the field, on POST and PUT", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      for (const field of ["name", "description"]) {
        const input = yield* fresh("nul")
        const created = yield* app.request("/worker-apps/", { method: "POST", json: { ...input, [field]: `a${NUL}b` } })
        assert.strictEqual(created.status, 422, created.text)
        assert.deepStrictEqual(locsOf(created.body), [`body.${field}`])
      }
      const ok = yield* answered(client.workerApps.create({ payload: yield* fresh("nul-put") }))
      assert.strictEqual(ok.status, 201)
      for (const field of ["name", "description"]) {
        const updated = yield* app.request(`/worker-apps/${ok.body.id}`, { method: "PUT", json: { [field]: `x${NUL}` } })
        assert.strictEqual(updated.status, 422, updated.text)
        assert.deepStrictEqual(locsOf(updated.body), [`body.${field}`])
      }
    }))

  it.effect("defect 5: U+0000 in a replay filter's owner_id or inside a webhook-log cursor is a 422", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const replay = yield* app.request("/monitoring/replay", { method: "POST", json: { owner_id: `1${NUL}2` } })
      assert.strictEqual(replay.status, 422, replay.text)
      assert.deepStrictEqual(locsOf(replay.body), ["body.owner_id"])
      const cases = [[`a${NUL}b`, ""], [`${"a".repeat(63)}${NUL}`, ""], [`1${NUL}`, "&status=duplicate"], ["9".repeat(64), "&status=duplicate"]]
      for (const [key, status] of cases) {
        const cursor = Buffer.from(JSON.stringify(["2026-11-27T00:00:00.000Z", key])).toString("base64url")
        const page = yield* app.request(`/monitoring/webhook-logs?cursor=${cursor}${status}`)
        assert.strictEqual(page.status, 422, `${key} ${status}: ${page.text}`)
      }
    }))

  it.effect("names are compared in NFC: the same name in another normalization form is a 409", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const base = `caf${uniqueId()}`
      const composed = yield* answered(client.workerApps.create({ payload: { ...(yield* fresh("nfc")), name: `${base}\u00e9` } }))
      assert.strictEqual(composed.status, 201)
      // Raw, to read the 409's text.
      const decomposed = yield* app.request("/worker-apps/", {
        method: "POST",
        json: { ...(yield* fresh("nfd")), name: `${base}e\u0301` }
      })
      assert.strictEqual(decomposed.status, 409, decomposed.text)
      assert.include(decomposed.text, "name")
    }))

  it.effect("an owner_id with a leading zero is refused, in the body and as a filter", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const created = yield* app.request("/worker-apps/", { method: "POST", json: { ...(yield* fresh("zero")), owner_id: "017841400" } })
      assert.strictEqual(created.status, 422, created.text)
      assert.deepStrictEqual(locsOf(created.body), ["body.owner_id"])
      const listed = yield* app.request("/worker-apps/?owner_id=0123")
      assert.strictEqual(listed.status, 422, listed.text)
    }))

  it.effect("integer query parameters take decimal digits only", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      for (const value of ["0x10", "1e2", "%205", "5.0", "-1", "+5", "", "1_0"]) {
        for (const path of ["/worker-apps/?limit=", "/worker-apps/?offset=", "/monitoring/webhook-logs?limit=", "/monitoring/queues?limit="]) {
          const response = yield* app.request(`${path}${value}`)
          assert.strictEqual(response.status, 422, `${path}${value}: ${response.text}`)
        }
      }
      const fine = yield* answered((yield* AdminClient).workerApps.list({ query: { limit: 2, offset: 0 } }))
      assert.strictEqual(fine.status, 200)
    }))

  it.effect("/monitoring/queues is paged with limit and offset, and says how many apps there are", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      for (let i = 0; i < 3; i++) {
        const created = yield* answered(client.workerApps.create({ payload: yield* fresh("page") }))
        assert.strictEqual(created.status, 201)
      }
      const all = yield* client.workerApps.list({ query: { limit: 1 } })
      const page = yield* answered(client.monitoring.queues({ query: { limit: 2, offset: 1 } }))
      assert.strictEqual(page.status, 200)
      assert.strictEqual(page.body.items.length, 2)
      assert.strictEqual(page.body.total, all.total)
      const first = yield* client.monitoring.queues({ query: { limit: 3 } })
      assert.deepStrictEqual(page.body.items.map((i) => i.worker_app_id), first.items.slice(1, 3).map((i) => i.worker_app_id))
      const tooMany = yield* app.request("/monitoring/queues?limit=501")
      assert.strictEqual(tooMany.status, 422)
    }))

  it.effect("defect 7: creating or renaming onto a queue declared with other arguments is a 409 saying why, and stores nothing", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const amqp = yield* Amqp
      const taken = amqp.queueName(`classic-${uniqueId()}`)
      // Declared by someone else as a classic queue without dead-lettering: the service's declare is refused.
      yield* Effect.promise(async () => {
        const channel = await amqp.connection.createChannel()
        await channel.assertQueue(taken, { durable: true, arguments: { "x-queue-type": "classic" } })
        await channel.close()
      })
      const input = yield* fresh("refused")
      // Raw, to read the 409's text.
      const created = yield* app.request("/worker-apps/", {
        method: "POST",
        json: { ...input, queue_name: taken }
      })
      assert.strictEqual(created.status, 409, created.text)
      assert.include(created.text, "queue_name")
      assert.include(created.text, taken)
      const none = yield* client.workerApps.list({ query: { owner_id: input.owner_id } })
      assert.strictEqual(none.total, 0)

      const ok = yield* answered(client.workerApps.create({ payload: input }))
      assert.strictEqual(ok.status, 201)
      const renamed = yield* refused(client.workerApps.update({ params: { id: ok.body.id }, payload: { queue_name: taken } }))
      assert.strictEqual(renamed.status, 409)
      const kept = yield* client.workerApps.get({ params: { id: ok.body.id } })
      assert.strictEqual(kept.queue_name, input.queue_name)
    }))
})
