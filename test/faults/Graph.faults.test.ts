import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHmac, randomUUID } from "node:crypto"
import { GRAPH_TOKEN, GraphStandIn, type Reply, replies } from "../support/GraphStandIn.ts"
import {
  collect,
  createWorkerApp,
  deleteQueues,
  dropDatabase,
  faultEnv,
  newName,
  printFigures,
  psql,
  SECRET,
  startService,
  stopService,
  tally,
  waitHealthy
} from "./harness.ts"

const ENTRY_ID = "6600000001"
const OWNER_ID = "6600000999"
const MEDIA = Array.from({ length: 20 }, (_, i) => `1810000000000${String(i).padStart(4, "0")}`)

const postMediaComment = async (baseUrl: string, mediaId: string, commentId: string) => {
  const body = JSON.stringify({
    object: "instagram",
    entry: [{ id: ENTRY_ID, time: 1, changes: [{ field: "comments", value: { id: commentId, media: { id: mediaId } } }] }]
  })
  const response = await fetch(`${baseUrl}/webhook`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}` },
    body
  }).catch(() => undefined)
  await response?.arrayBuffer()
  return response?.status ?? 0
}

describe("Graph API under faults", () => {
  it.live("500s, timeouts and throttling for a minute: events wait, then all are routed, and Meta is not hammered", () =>
    Effect.gen(function*() {
      const graph = yield* GraphStandIn.make
      // Chaos: in turn a bare 500, a hang past the timeout, Meta's throttling error.
      const chaos: ReadonlyArray<Reply> = [
        replies.serverError(),
        replies.hang(),
        // As Meta does, the throttling answer says when to come back (without it the
        // pause doubles each time, up to 15 minutes: longer than this test waits).
        replies.error(4, { message: "Application request limit reached", headers: { "retry-after": "5" } }),
        replies.error(2, { status: 503 })
      ]
      let turn = 0
      graph.setFallback(() => chaos[turn++ % chaos.length]!)

      const database = newName("graph")
      const queue = `t.fault.graph.${Math.random().toString(36).slice(2, 8)}`
      const service = yield* Effect.promise(() =>
        startService(faultEnv(database, {
          OWNER_RESOLUTION: "graph",
          GRAPH_API_URL: graph.url,
          INSTAGRAM_ACCESS_TOKEN: GRAPH_TOKEN,
          GRAPH_API_TIMEOUT: "1 second",
          GRAPH_API_THROTTLE_PAUSE: "5 seconds",
          GRAPH_API_CIRCUIT_COOLDOWN: "5 seconds"
        }))
      )
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          await stopService(service)
          dropDatabase(database)
          await deleteQueues([queue])
          printFigures()
        })
      )
      yield* Effect.promise(async () => {
        await waitHealthy(service)
        await createWorkerApp(service, OWNER_ID, queue)
      })
      const consumer = yield* Effect.promise(() => collect(queue))
      yield* Effect.addFinalizer(() => Effect.promise(() => consumer.close()))

      // A steady stream for a minute while Meta misbehaves.
      const acknowledged: Array<string> = []
      let refused = 0
      yield* Effect.promise(async () => {
        const until = Date.now() + 60_000
        const loop = async (n: number) => {
          for (let i = 0; Date.now() < until; i++) {
            const id = `g-${randomUUID()}`
            const status = await postMediaComment(service.baseUrl, MEDIA[(n + i) % MEDIA.length]!, id)
            if (status === 200) acknowledged.push(id)
            else refused++
          }
        }
        await Promise.all(Array.from({ length: 6 }, (_, n) => loop(n)))
      })
      const callsDuringChaos = graph.calls.length
      assert.strictEqual(refused, 0)
      assert.isAbove(acknowledged.length, 1000)
      // Nothing was routed by guess while Meta could not say who owns the media.
      assert.strictEqual(consumer.seen.size, 0)
      assert.strictEqual(psql(database, "SELECT count(*) FROM webhook_events WHERE status <> 'pending'"), "0")
      // Throttling, backoff and the circuit breaker kept the calls far below the events
      // (and below the configured 10 calls/s over the minute).
      assert.isBelow(callsDuringChaos, 600)

      // Meta recovers: every media belongs to the worker app's account.
      graph.setFallback(() => replies.owner(OWNER_ID))
      const missing = yield* Effect.promise(() => consumer.waitFor(acknowledged, 120_000))
      assert.deepStrictEqual(missing, [])
      const figures = tally("Graph API 500s, timeouts, throttling for 60 s (graph mode)", 1, acknowledged, consumer.seen)
      assert.strictEqual(figures.lost, 0)
      // Once owners are known they are cached: one successful call per media at most.
      const ownerCalls = graph.calls.length - callsDuringChaos
      assert.isBelow(ownerCalls, MEDIA.length * 4)
      yield* Effect.log(`graph chaos: ${callsDuringChaos} calls in the minute, ${ownerCalls} after, ${acknowledged.length} events`)
    }).pipe(Effect.scoped), 280_000)
})
