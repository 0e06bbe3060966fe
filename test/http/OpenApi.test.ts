import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { WorkerApp } from "../../src/domain/WorkerApp.ts"
import { Amqp } from "../support/Amqp.ts"
import { TestApp } from "../support/TestApp.ts"

const Operation = Schema.Struct({
  operationId: Schema.String,
  summary: Schema.optional(Schema.String),
  requestBody: Schema.optional(Schema.Struct({ content: Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Unknown)) })),
  responses: Schema.Record(Schema.String, Schema.Struct({ content: Schema.optional(Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Unknown))) }))
})
const Spec = Schema.Struct({
  paths: Schema.Record(Schema.String, Schema.Record(Schema.String, Operation)),
  components: Schema.Struct({ schemas: Schema.Record(Schema.String, Schema.Unknown) })
})
type Spec = typeof Spec.Type

const spec = Effect.gen(function*() {
  const app = yield* TestApp
  const response = yield* app.request<unknown>("/openapi.json", { auth: false })
  assert.strictEqual(response.status, 200)
  return { raw: response.text, spec: Schema.decodeUnknownSync(Spec)(response.body) }
})

const operations = (document: Spec) =>
  Object.entries(document.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })))

const requestExample = (document: Spec, operationId: string) => {
  const found = operations(document).find(({ op }) => op.operationId === operationId)
  return found?.op.requestBody?.content["application/json"]?.["example"]
}

layer(Layer.mergeAll(Amqp.layer("openapi")).pipe(Layer.provideMerge(TestApp.layer("openapi"))), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("the OpenAPI document", (it) => {
  it.effect("a summary per operation, an example for every JSON body, schema names without Encoded, no _tag", () =>
    Effect.gen(function*() {
      const { raw, spec: document } = yield* spec
      for (const { path, method, op } of operations(document)) {
        const where = `${method.toUpperCase()} ${path}`
        assert.isString(op.summary, `${where} has no summary`)
        const body = op.requestBody?.content["application/json"]
        if (body !== undefined) assert.property(body, "example", `${where} request`)
        for (const [status, response] of Object.entries(op.responses)) {
          const json = response.content?.["application/json"]
          if (json !== undefined) assert.property(json, "example", `${where} ${status}`)
        }
      }
      for (const name of Object.keys(document.components.schemas)) assert.notMatch(name, /Encoded$/)
      assert.notInclude(raw, "Encoded\"")
      assert.notInclude(raw, "\"_tag\"")
      const create = JSON.stringify(document.components.schemas["WorkerAppCreate"])
      assert.include(create, "\"pattern\":\"^[1-9][0-9]{0,31}$\"")
      assert.include(create, "\"pattern\":\"^[A-Za-z0-9._:-]{1,200}$\"")
      assert.include(create, "\"additionalProperties\":false")
    }))

  it.effect("Try it out with the examples as generated succeeds: create, update, replay", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const { spec: document } = yield* spec
      const example = requestExample(document, "workerApps.create")
      assert.isDefined(example)
      // Raw: the examples are sent exactly as the document gives them.
      const created = yield* app.request("/worker-apps/", { method: "POST", json: example })
      assert.strictEqual(created.status, 201, created.text)
      const createdApp = Schema.decodeUnknownSync(WorkerApp)(created.body)
      // The example's queues are declared on the shared broker: removed again.
      yield* amqp.deleteQueues([createdApp.queue_name, `${createdApp.queue_name}.dlq`])
      const updated = yield* app.request(`/worker-apps/${createdApp.id}`, {
        method: "PUT",
        json: requestExample(document, "workerApps.update")
      })
      assert.strictEqual(updated.status, 200, updated.text)
      const replayed = yield* app.request("/monitoring/replay", { method: "POST", json: requestExample(document, "monitoring.replay") })
      assert.strictEqual(replayed.status, 200, replayed.text)
    }))
})
