import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import { performance } from "node:perf_hooks"
import { Amqp } from "../support/Amqp.ts"
import { type Arrival, arrived, listen } from "../support/Arrivals.ts"
import { GRAPH_TOKEN, GraphStandIn, replies } from "../support/GraphStandIn.ts"
import { TestApp } from "../support/TestApp.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"
import { commentEvent, messagingEvent, postWebhook, type SentEvent, uniqueId, webhookText } from "../support/Webhooks.ts"

// ---------------------------------------------------------------------------------------------
// Order per account (CONTRACT "Order"): a key's events reach its queue in the order they were sent.
// ---------------------------------------------------------------------------------------------

const accept = (body: string) =>
  Effect.gen(function*() {
    const response = yield* postWebhook(yield* TestApp, body)
    assert.strictEqual(response.status, 200, response.text)
  })

/** The id a test gave an event: a comment's id or a messaging item's mid, read back from a worker's message. */
const sentKey = (text: string): string => {
  const value: unknown = JSON.parse(text).value
  if (typeof value !== "object" || value === null) return ""
  const id: unknown = Reflect.get(value, "id")
  if (typeof id === "string") return id
  const message: unknown = Reflect.get(value, "message")
  const mid: unknown = typeof message === "object" && message !== null ? Reflect.get(message, "mid") : undefined
  return typeof mid === "string" ? mid : ""
}

/** Per queue, the sent keys in arrival order, each once (redelivered duplicates dropped). */
const keysPerQueue = (arrivals: ReadonlyArray<Arrival>) => {
  const byQueue = new Map<string, Array<string>>()
  const seen = new Set<string>()
  for (const arrival of arrivals) {
    const key = sentKey(arrival.text)
    if (seen.has(key)) continue
    seen.add(key)
    const list = byQueue.get(arrival.queue) ?? []
    list.push(key)
    byQueue.set(arrival.queue, list)
  }
  return byQueue
}

const replay = (path: string, json?: unknown) =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const response = yield* app.request<{ readonly queued: number }>(path, { method: "POST", ...(json === undefined ? {} : { json }) })
    assert.strictEqual(response.status, 200, response.text)
    return response.body.queued
  })

layer(Amqp.layer("order").pipe(Layer.provideMerge(TestApp.layer("order"))), { excludeTestServices: true, timeout: "90 seconds" })(
  "delivery order",
  (it) => {
    it.effect("one body with 100 messaging items for one account is consumed in exactly the sent order", () =>
      Effect.scoped(Effect.gen(function*() {
        const amqp = yield* Amqp
        const owner = uniqueId()
        const worker = yield* createWorkerApp("hundred", owner)
        const arrivals = yield* listen(amqp.connection, [worker.queue_name])
        const events = Array.from({ length: 100 }, () => messagingEvent(owner, "message"))
        yield* accept(webhookText([events]))
        yield* arrived(arrivals, 100)
        assert.deepStrictEqual(keysPerQueue(arrivals).get(worker.queue_name), events.map((e) => e.key))
      })))

    it.effect("20 accounts × 50 sequential webhooks over 16 connections: each account in send order, the accounts interleaved", () =>
      Effect.scoped(Effect.gen(function*() {
        const amqp = yield* Amqp
        const owners = Array.from({ length: 20 }, () => uniqueId())
        const workers = yield* Effect.forEach(owners, (owner, i) => createWorkerApp(`acct${i}`, owner))
        const arrivals = yield* listen(amqp.connection, workers.map((w) => w.queue_name))
        const sent = owners.map((owner) => Array.from({ length: 50 }, () => commentEvent(owner)))
        // Sixteen senders take the accounts in turn: each account's webhooks one after the other.
        const queue = sent.flatMap((events, account) => events.map((event, i) => ({ account, i, event })))
        const next = new Array<number>(20).fill(0)
        const busy = new Set<number>()
        const sender = Effect.gen(function*() {
          while (true) {
            const item = queue.find((x) => !busy.has(x.account) && next[x.account] === x.i)
            if (item === undefined) {
              if (queue.every((x) => next[x.account]! > x.i)) return
              yield* Effect.sleep("1 millis")
              continue
            }
            busy.add(item.account)
            yield* accept(webhookText([[item.event]]))
            next[item.account] = item.i + 1
            busy.delete(item.account)
          }
        })
        yield* Effect.all(Array.from({ length: 16 }, () => sender), { concurrency: "unbounded" })
        yield* arrived(arrivals, 1000)
        const byQueue = keysPerQueue(arrivals)
        workers.forEach((worker, account) => {
          assert.deepStrictEqual(byQueue.get(worker.queue_name), sent[account]!.map((e) => e.key), `account ${account}`)
        })
        // Interleaved: the arrivals switch between accounts far more often than once per account.
        let switches = 0
        for (let i = 1; i < arrivals.length; i++) if (arrivals[i]!.queue !== arrivals[i - 1]!.queue) switches++
        assert.isAbove(switches, 100)
      })))

    it.effect("a replayed event arrives within 1 s; a replay by filter arrives in journal order", () =>
      Effect.scoped(Effect.gen(function*() {
        const amqp = yield* Amqp
        const owner = uniqueId()
        const worker = yield* createWorkerApp("replayed", owner)
        const arrivals = yield* listen(amqp.connection, [worker.queue_name])
        const events: Array<SentEvent> = Array.from({ length: 13 }, () => commentEvent(owner))
        for (const event of events) yield* accept(webhookText([[event]]))
        yield* arrived(arrivals, 13)
        const first = arrivals.slice(0, 13)
        assert.deepStrictEqual(first.map((a) => sentKey(a.text)), events.map((e) => e.key))

        // One event: the service is idle, so it is published at once, not at the next sweep.
        const target = first[6]!
        const calledAt = performance.now()
        assert.strictEqual(yield* replay(`/monitoring/webhook-logs/${target.messageId}/replay`), 1)
        yield* arrived(arrivals, 14)
        const again = arrivals[13]
        assert.isDefined(again)
        assert.strictEqual(again?.messageId, target.messageId)
        assert.isBelow((again?.at ?? Infinity) - calledAt, 1000, "replayed event arrived within 1 s")

        // By filter (once the single replay is recorded): all 13 again, in journal order.
        const app = yield* TestApp
        yield* eventually(
          app.request<{ readonly items: ReadonlyArray<unknown> }>("/monitoring/webhook-logs?status=pending"),
          (response) => response.status === 200 && response.body.items.length === 0
        )
        assert.strictEqual(yield* replay("/monitoring/replay", { owner_id: owner }), 13)
        yield* arrived(arrivals, 27)
        assert.deepStrictEqual(arrivals.slice(14).map((a) => sentKey(a.text)), events.map((e) => e.key))
      })))
  }
)

// ---------------------------------------------------------------------------------------------
// A slow owner lookup holds only its own account.
// ---------------------------------------------------------------------------------------------

const graphEnvironment = Amqp.layer("order_graph").pipe(
  Layer.provideMerge(Layer.unwrap(Effect.map(GraphStandIn, (standIn) =>
    TestApp.layer("order_graph", {
      ownerResolution: "graph",
      instagramAccessToken: Option.some(Redacted.make(GRAPH_TOKEN)),
      graphApiUrl: standIn.url,
      // Longer than the stand-in's slow answer, so the lookup is waited for, not retried.
      graphTimeout: Duration.seconds(6)
    })))),
  Layer.provideMerge(GraphStandIn.layer)
)

layer(graphEnvironment, { excludeTestServices: true, timeout: "90 seconds" })("delivery order in graph mode", (it) => {
  it.effect("a media answered after 3 s holds its account's later events, not the other accounts'", () =>
    Effect.scoped(Effect.gen(function*() {
      const standIn = yield* GraphStandIn
      const amqp = yield* Amqp
      const slowOwner = uniqueId()
      const otherOwner = uniqueId()
      const slowWorker = yield* createWorkerApp("slow", slowOwner)
      const otherWorker = yield* createWorkerApp("other", otherOwner)
      const arrivals = yield* listen(amqp.connection, [slowWorker.queue_name, otherWorker.queue_name])
      const slowMedia = uniqueId()
      const held = [commentEvent(slowOwner, { mediaId: slowMedia }), ...Array.from({ length: 4 }, () => commentEvent(slowOwner))]
      const others = Array.from({ length: 10 }, () => commentEvent(otherOwner))
      for (const event of held) standIn.script(event.mediaId ?? "", event === held[0] ? replies.later(3000, replies.owner(slowOwner)) : replies.owner(slowOwner))
      for (const event of others) standIn.script(event.mediaId ?? "", replies.owner(otherOwner))
      const sentAt = performance.now()
      for (const event of held) yield* accept(webhookText([[event]]))
      for (const event of others) yield* accept(webhookText([[event]]))

      yield* arrived(arrivals, 15)
      const byQueue = keysPerQueue(arrivals)
      assert.deepStrictEqual(byQueue.get(slowWorker.queue_name), held.map((e) => e.key), "the slow account in order")
      assert.deepStrictEqual(byQueue.get(otherWorker.queue_name), others.map((e) => e.key))
      const lastOther = Math.max(...arrivals.filter((a) => a.queue === otherWorker.queue_name).map((a) => a.at))
      const firstSlow = Math.min(...arrivals.filter((a) => a.queue === slowWorker.queue_name).map((a) => a.at))
      assert.isBelow(lastOther, firstSlow, "the other account was delivered while the lookup waited")
      assert.isAtLeast(firstSlow - sentAt, 2900, "the held account waited for its lookup")
    })))
})
