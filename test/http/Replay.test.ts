import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { AdminClient, locsOf, refused } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { TestApp } from "../support/TestApp.ts"
import { uniqueId } from "../support/Webhooks.ts"
import { createWorkerApp } from "../support/WorkerApps.ts"
import {
  assertMessageOf,
  environment,
  eventIdOf,
  HEX64,
  logs,
  quiescent,
  replay,
  replayOne,
  sendEach,
  settledRows,
  tally,
  UNROUTABLE
} from "../support/Monitoring.ts"

layer(environment("monitoring_replay"), { excludeTestServices: true, timeout: "90 seconds" })("replay", (it) => {
  it.effect("replays one event with the same id and x-attempt one higher; 404 unknown, 422 malformed", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const client = yield* AdminClient
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("replay-one")
      const [event, other] = yield* sendEach(workerApp.owner_id, 2)
      const first = yield* amqp.drainQueue(workerApp.queue_name, { expected: 2 })
      assert.strictEqual(first.length, 2)
      const [row] = yield* settledRows([event!])
      const eventId = row!.event_id
      assert.match(eventId, HEX64)
      const original = first.find((m) => eventIdOf(m) === eventId)
      assert.isDefined(original)
      if (original !== undefined) assertMessageOf(original, eventId, 1)

      assert.deepStrictEqual(yield* replayOne(eventId), { queued: 1, more: false })
      const again = yield* amqp.drainQueue(workerApp.queue_name, { expected: 1, settleMs: 1000 })
      assert.strictEqual(again.length, 1, "only the replayed event arrives again")
      assertMessageOf(again[0]!, eventId, 2)
      assert.strictEqual(again[0]!.text, original?.text, "the same message body")
      const [replayed] = yield* settledRows([event!])
      assert.deepInclude(replayed, { status: "routed", attempts: 2, event_id: eventId })
      assert.strictEqual(replayed?.received_at.getTime(), row?.received_at.getTime())
      const [untouched] = yield* settledRows([other!])
      assert.strictEqual(untouched?.attempts, 1)
      const entry = (yield* logs({ owner_id: workerApp.owner_id })).items.find((e) => e.event_id === eventId)
      assert.strictEqual(entry?.attempts, 2)

      // Once more: attempt 3.
      assert.deepStrictEqual(yield* replayOne(eventId), { queued: 1, more: false })
      const third = yield* amqp.drainQueue(workerApp.queue_name, { expected: 1, settleMs: 1000 })
      assert.strictEqual(third.length, 1)
      assertMessageOf(third[0]!, eventId, 3)

      const unknown = yield* refused(client.monitoring.replayOne({ params: { event_id: "0".repeat(64) } }))
      assert.strictEqual(unknown.status, 404)
      for (const bad of ["abc", eventId.toUpperCase(), eventId.slice(1), `${eventId}0`, `${eventId.slice(1)}g`]) {
        const response = yield* app.request<unknown>(`/monitoring/webhook-logs/${bad}/replay`, { method: "POST" })
        assert.strictEqual(response.status, 422, `${bad}: ${response.text}`)
        assert.include(locsOf(response.body), "path.event_id")
      }
      // Nothing more arrived for any of this.
      assert.deepStrictEqual(yield* amqp.drainQueue(workerApp.queue_name, { expected: 0, firstMessageMs: 1500 }), [])
    }))

  it.effect("replays by filter exactly the matching events, and refuses an empty or invalid filter", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const appR = yield* createWorkerApp("replay-owner")
      const appS = yield* createWorkerApp("replay-since")
      const eventsR = yield* sendEach(appR.owner_id, 3)
      const eventsS = yield* sendEach(appS.owner_id, 4)
      assert.strictEqual((yield* amqp.drainQueue(appR.queue_name, { expected: 3 })).length, 3)
      assert.strictEqual((yield* amqp.drainQueue(appS.queue_name, { expected: 4 })).length, 4)
      const rowsR = yield* settledRows(eventsR)
      const rowsS = yield* settledRows(eventsS)
      yield* quiescent

      // owner_id: all of that owner's events, and nobody else's.
      assert.deepStrictEqual(yield* replay({ owner_id: appR.owner_id }), { queued: 3, more: false })
      const againR = yield* amqp.drainQueue(appR.queue_name, { expected: 3, settleMs: 1000 })
      assert.deepStrictEqual(
        [...tally(againR)].sort(),
        rowsR.map((r): [string, Array<unknown>] => [r.event_id, [2]]).sort()
      )
      assert.deepStrictEqual(yield* amqp.drainQueue(appS.queue_name, { expected: 0, firstMessageMs: 1000 }), [])

      // status + since (inclusive) + until (exclusive), to the millisecond: S's 2nd and 3rd events only.
      const sinceIso = rowsS[1]!.received_at.toISOString()
      const untilIso = rowsS[3]!.received_at.toISOString()
      assert.isBelow(rowsS[2]!.received_at.getTime(), rowsS[3]!.received_at.getTime())
      yield* quiescent
      assert.deepStrictEqual(yield* replay({ status: "routed", since: sinceIso, until: untilIso }), { queued: 2, more: false })
      const againS = yield* amqp.drainQueue(appS.queue_name, { expected: 2, settleMs: 1000 })
      assert.deepStrictEqual(
        [...tally(againS)].sort(),
        [rowsS[1]!, rowsS[2]!].map((r): [string, Array<unknown>] => [r.event_id, [2]]).sort()
      )
      assert.deepStrictEqual(yield* amqp.drainQueue(appR.queue_name, { expected: 0, firstMessageMs: 1000 }), [])
      const afterS = yield* settledRows(eventsS)
      assert.deepStrictEqual(afterS.map((r) => r.attempts), [1, 2, 2, 1])
      const afterR = yield* settledRows(eventsR)
      assert.deepStrictEqual(afterR.map((r) => r.attempts), [2, 2, 2])

      // A status that matches none of these: nothing.
      yield* quiescent
      assert.deepStrictEqual(
        yield* replay({ status: "dead_lettered", owner_id: appR.owner_id }),
        { queued: 0, more: false }
      )
      assert.deepStrictEqual(yield* replay({ owner_id: uniqueId() }), { queued: 0, more: false })

      // Unroutable events are replayed to the unroutable queue.
      const stranger = uniqueId()
      const lost = yield* sendEach(stranger, 2)
      const rowsL = yield* settledRows(lost)
      const lostIds = rowsL.map((r) => r.event_id)
      const firstCopies = yield* amqp.takeMatching(UNROUTABLE, (m) => lostIds.includes(String(eventIdOf(m))), {
        expected: 2,
        idleMs: 5000
      })
      assert.strictEqual(firstCopies.length, 2)
      assert.deepStrictEqual(yield* replay({ status: "unroutable", owner_id: stranger }), { queued: 2, more: false })
      const secondCopies = yield* amqp.takeMatching(UNROUTABLE, (m) => lostIds.includes(String(eventIdOf(m))), {
        expected: 2,
        idleMs: 5000,
        settleMs: 1000
      })
      assert.deepStrictEqual([...tally(secondCopies)].sort(), lostIds.map((id): [string, Array<unknown>] => [id, [2]]).sort())

      for (
        const body of [
          {},
          { since: "not a time" },
          { until: "yesterday" },
          { status: "bogus" },
          { status: "duplicate" },
          { owner_id: 17 }
        ]
      ) {
        const response = yield* app.request<unknown>("/monitoring/replay", { method: "POST", json: body })
        assert.strictEqual(response.status, 422, `${JSON.stringify(body)}: ${response.text}`)
      }
      yield* quiescent
    }))

  it.effect("replaying twice queues nothing twice: pending events are never queued again", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const sql = yield* SqlClient.SqlClient
      const workerApp = yield* createWorkerApp("replay-twice")
      const events = yield* sendEach(workerApp.owner_id, 4)
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 4 })).length, 4)
      const rows = yield* settledRows(events)
      yield* quiescent

      // Back to back. The second call can only find events the sweeper already delivered again
      // in between (then they are re-queued once more, legitimately); never one still pending.
      const first = yield* replay({ owner_id: workerApp.owner_id })
      const second = yield* replay({ owner_id: workerApp.owner_id })
      assert.deepStrictEqual(first, { queued: 4, more: false })
      assert.isAtLeast(second.queued, 0)
      assert.isAtMost(second.queued, 4)
      const again = yield* amqp.drainQueue(workerApp.queue_name, { expected: 4 + second.queued, settleMs: 1500 })
      assert.strictEqual(again.length, 4 + second.queued)
      const counts = tally(again)
      assert.deepStrictEqual([...counts.keys()].sort(), rows.map((r) => r.event_id).sort())
      const twice = [...counts.values()].filter((attempts) => attempts.length === 2)
      assert.strictEqual(twice.length, second.queued)
      for (const attempts of counts.values()) {
        assert.deepStrictEqual([...attempts].sort(), attempts.length === 1 ? [2] : [2, 3])
      }
      yield* quiescent

      // Deterministically: an event parked as pending (lease far ahead, so the sweeper leaves it)
      // is not queued by a replay of its owner, its id, or its status.
      const parkedOwner = uniqueId()
      const parkedId = "f".repeat(40) + uniqueId().slice(-17).padStart(24, "0")
      assert.match(parkedId, HEX64)
      yield* sql`
        INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, owner_id, status, attempts, value_raw, lease_until)
        VALUES (${parkedId}, now(), 'instagram', 'comments', ${parkedOwner}, ${parkedOwner}, 'pending', 1, '{}', now() + interval '1 hour')
      `.pipe(Effect.orDie)
      yield* Effect.gen(function*() {
        assert.deepStrictEqual(yield* replay({ owner_id: parkedOwner }), { queued: 0, more: false })
        assert.deepStrictEqual(yield* replayOne(parkedId), { queued: 0, more: false })
        assert.deepStrictEqual(yield* replay({ status: "pending" }), { queued: 0, more: false })
        const pending = yield* logs({ status: "pending" })
        assert.deepStrictEqual(pending.items.map((e) => e.event_id), [parkedId])
        const state = yield* sql<{ readonly status: string; readonly attempts: number }>`
          SELECT status, attempts FROM webhook_events WHERE event_id = ${parkedId}
        `.pipe(Effect.orDie)
        assert.deepStrictEqual(state.map((r) => ({ ...r })), [{ status: "pending", attempts: 1 }])
      }).pipe(
        Effect.ensuring(sql`DELETE FROM webhook_events WHERE event_id = ${parkedId}`.pipe(Effect.orDie))
      )
    }))
})
