import { assert } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Amqp } from "./Amqp.ts"
import { TestApp } from "./TestApp.ts"
import { uniqueId } from "./Webhooks.ts"

/** A worker app as the admin API answers it (the fields the pipeline tests use). */
export const WorkerAppJson = Schema.Struct({
  id: Schema.String,
  owner_id: Schema.String,
  queue_name: Schema.String,
  is_active: Schema.Boolean
})
export type WorkerAppJson = typeof WorkerAppJson.Type
export const decodeWorkerApp = Schema.decodeUnknownSync(WorkerAppJson)

/** Creates a worker app through the admin API, with a queue of the test file's prefix; expects 201. */
export const createWorkerApp = (label: string, ownerId: string = uniqueId(), isActive = true) =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const queue = (yield* Amqp).queueName(label)
    const response = yield* app.request<unknown>("/worker-apps/", {
      method: "POST",
      json: { name: queue, owner_id: ownerId, queue_name: queue, is_active: isActive }
    })
    assert.strictEqual(response.status, 201, response.text)
    return decodeWorkerApp(response.body)
  })

/** Polls `effect` every 100 ms until `done` holds or `seconds` pass; returns the last result either way. */
export const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (a: A) => boolean, seconds = 20) =>
  Effect.gen(function*() {
    let last = yield* effect
    for (let i = 0; i < seconds * 10 && !done(last); i++) {
      yield* Effect.sleep("100 millis")
      last = yield* effect
    }
    return last
  })
