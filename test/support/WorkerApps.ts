import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { AdminClient, answered } from "./AdminClient.ts"
import { Amqp } from "./Amqp.ts"
import { uniqueId } from "./Webhooks.ts"

/** Creates a worker app through the admin API, with a queue of the test file's prefix; expects 201. */
export const createWorkerApp = (label: string, ownerId: string = uniqueId(), isActive = true) =>
  Effect.gen(function*() {
    const client = yield* AdminClient
    const queue = (yield* Amqp).queueName(label)
    const created = yield* answered(client.workerApps.create({
      payload: { name: queue, owner_id: ownerId, queue_name: queue, is_active: isActive }
    }))
    assert.strictEqual(created.status, 201)
    return created.body
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
