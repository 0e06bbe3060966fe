import { assert, layer } from "@effect/vitest"
import amqp from "amqplib"
import { Effect, Schema } from "effect"
import { TestApp } from "../support/TestApp.ts"
import { sign } from "../support/Webhooks.ts"

const queue = `t.topology.${Math.random().toString(36).slice(2, 8)}`
const ownerId = "7700000001"

const withChannel = <A>(f: (channel: amqp.Channel) => Promise<A>) =>
  Effect.promise(async () => {
    const connection = await amqp.connect("amqp://guest:guest@127.0.0.1:5672")
    try {
      const channel = await connection.createChannel()
      // A get on a missing queue closes the channel with 404: expected here.
      channel.on("error", () => {})
      return await f(channel)
    } finally {
      await connection.close().catch(() => {})
    }
  })

const post = (baseUrl: string, commentId: string) => {
  const body = JSON.stringify({
    object: "instagram",
    entry: [{ id: ownerId, time: 1, changes: [{ field: "comments", value: { id: commentId } }] }]
  })
  return Effect.promise(() =>
    fetch(`${baseUrl}/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-hub-signature-256": sign(body) },
      body
    }).then((response) => response.status)
  )
}

const Delivered = Schema.fromJsonString(Schema.Struct({ value: Schema.Struct({ id: Schema.String }) }))

const getOnce = withChannel((channel) => channel.get(queue, { noAck: true }).catch(() => false as const))

/** The next message on the queue (a fresh channel per try: the queue may not exist yet). */
const waitForMessage = Effect.gen(function*() {
  for (let i = 0; i < 100; i++) {
    const message = yield* getOnce
    if (message !== false) return Schema.decodeUnknownSync(Delivered)(message.content.toString())
    yield* Effect.sleep("100 millis")
  }
  return undefined
})

layer(TestApp.layer("topology"), { excludeTestServices: true, timeout: "60 seconds" })("queue topology", (it) => {
  it.effect("a worker app's queue deleted behind the service's back is declared again, and the event delivered", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const created = yield* app.request("/worker-apps/", { method: "POST", json: { name: "topology", owner_id: ownerId, queue_name: queue } })
      assert.strictEqual(created.status, 201)
      assert.strictEqual(yield* post(app.baseUrl, "before"), 200)
      assert.strictEqual((yield* waitForMessage)?.value.id, "before")

      yield* withChannel((channel) => channel.deleteQueue(queue))
      assert.strictEqual(yield* post(app.baseUrl, "after"), 200)
      assert.strictEqual((yield* waitForMessage)?.value.id, "after")
      const logs = yield* app.request<{ items: ReadonlyArray<{ status: string; value: { id: string } }> }>(
        "/monitoring/webhook-logs?limit=10"
      )
      assert.deepStrictEqual(logs.body.items.map((item) => [item.value.id, item.status]), [["after", "routed"], ["before", "routed"]])
      yield* withChannel(async (channel) => {
        await channel.deleteQueue(queue)
        await channel.deleteQueue(`${queue}.dlq`)
      })
    }))
})
