import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import type { EventStatus, WebhookLogEntry } from "../../src/domain/WebhookLog.ts"
import { WorkerAppId } from "../../src/domain/WorkerApp.ts"
import { locsOf } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { TestApp } from "../support/TestApp.ts"
import { commentEvent, uniqueId } from "../support/Webhooks.ts"
import { createWorkerApp } from "../support/WorkerApps.ts"
import {
  allPages,
  assertNewestFirst,
  environment,
  eventIdOf,
  logs,
  quiescent,
  send,
  sendEach,
  settledRows,
  UNROUTABLE
} from "../support/Monitoring.ts"

layer(environment("monitoring_logs"), { excludeTestServices: true, timeout: "90 seconds" })("webhook logs", (it) => {
  it.effect("webhook logs filter by status, owner, worker app and since, newest first, with a limit", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const appA = yield* createWorkerApp("logs-a")
      const appB = yield* createWorkerApp("logs-b")
      const stranger = uniqueId() // no worker app: unroutable
      const routedA = yield* sendEach(appA.owner_id, 3)
      const routedB = yield* sendEach(appB.owner_id, 2)
      const unroutable = yield* sendEach(stranger, 2)
      const ignored = commentEvent(stranger)
      yield* send([[ignored]], "page")
      // Meta redelivers the first of A's events twice.
      yield* send([[routedA[0]!]])
      yield* send([[routedA[0]!]])
      assert.strictEqual((yield* amqp.drainQueue(appA.queue_name, { expected: 3 })).length, 3)
      assert.strictEqual((yield* amqp.drainQueue(appB.queue_name, { expected: 2 })).length, 2)
      const rowsA = yield* settledRows(routedA)
      const rowsB = yield* settledRows(routedB)
      const rowsU = yield* settledRows(unroutable)
      const [rowIgnored] = yield* settledRows([ignored])
      const ids = (rows: ReadonlyArray<{ readonly event_id: string }>) => rows.map((r) => r.event_id).sort()
      yield* amqp.takeMatching(UNROUTABLE, (m) => ids(rowsU).includes(String(eventIdOf(m))), {
        expected: rowsU.length,
        idleMs: 5000
      })

      // owner_id: exactly that owner's events, newest first.
      const byOwner = yield* logs({ owner_id: appA.owner_id })
      assert.deepStrictEqual(ids(byOwner.items), ids(rowsA))
      assert.isNull(byOwner.next_cursor)
      assertNewestFirst(byOwner.items)
      assert.isTrue(byOwner.items.every((e) => e.status === "routed" && e.worker_app_id === appA.id && e.attempts === 1))
      assert.deepStrictEqual(byOwner.items.map((e) => e.event_id), [...rowsA].reverse().map((r) => r.event_id))
      const strangers = yield* logs({ owner_id: stranger })
      assert.deepStrictEqual(ids(strangers.items), ids([...rowsU]))
      assert.isTrue(strangers.items.every((e) => e.status === "unroutable" && e.worker_app_id === null))

      // worker_app_id: exactly that app's events.
      const byApp = yield* logs({ worker_app_id: appB.id })
      assert.deepStrictEqual(ids(byApp.items), ids(rowsB))
      assertNewestFirst(byApp.items)
      const nobody = yield* logs({ worker_app_id: WorkerAppId.make("00000000-0000-4000-8000-000000000000") })
      assert.deepStrictEqual(nobody, { items: [], next_cursor: null })

      // status: only that status; ours of it in, ours of the others out; as many as the journal holds.
      const sql = yield* SqlClient.SqlClient
      const statusCount = (status: string) =>
        sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events WHERE status = ${status}`.pipe(
          Effect.orDie,
          Effect.map((rows) => rows[0]?.n ?? -1)
        )
      const expectations: ReadonlyArray<readonly [EventStatus, ReadonlyArray<string>, ReadonlyArray<string>]> = [
        ["routed", ids([...rowsA, ...rowsB]), ids([...rowsU, rowIgnored!])],
        ["unroutable", ids(rowsU), ids([...rowsA, ...rowsB, rowIgnored!])],
        ["ignored", ids([rowIgnored!]), ids([...rowsA, ...rowsB, ...rowsU])]
      ]
      for (const [status, mine, notMine] of expectations) {
        const pages = yield* allPages({ status, limit: 500 })
        const items = pages.flatMap((p) => p.items)
        assert.isTrue(items.every((e) => e.status === status), status)
        for (const id of mine) assert.include(items.map((e) => e.event_id), id, status)
        for (const id of notMine) assert.notInclude(items.map((e) => e.event_id), id, status)
        assert.strictEqual(items.length, yield* statusCount(status), status)
        assertNewestFirst(items)
      }
      const pending = yield* logs({ status: "pending" })
      assert.deepStrictEqual(pending.items, [])

      // duplicate: one row per redelivery, carrying the event it repeats, newest first.
      const duplicates = yield* logs({ status: "duplicate", owner_id: appA.owner_id })
      assert.strictEqual(duplicates.items.length, 2)
      assert.isTrue(duplicates.items.every((e) => e.status === "duplicate" && e.event_id === rowsA[0]!.event_id))
      assert.isAbove(Date.parse(duplicates.items[1]!.received_at), rowsA[0]!.received_at.getTime() - 1)
      assertNewestFirst(duplicates.items, false)
      const duplicatesOfB = yield* logs({ status: "duplicate", worker_app_id: appB.id })
      assert.deepStrictEqual(duplicatesOfB.items, [])

      // since: inclusive, to the millisecond; with another filter too.
      const middle = byOwner.items.find((e) => e.event_id === rowsA[1]!.event_id)
      assert.isDefined(middle)
      const since = middle?.received_at ?? ""
      const sinceA = yield* logs({ owner_id: appA.owner_id, since })
      assert.deepStrictEqual(ids(sinceA.items), ids(rowsA.slice(1)))
      const sinceAll = yield* allPages({ since, limit: 500 })
      const sinceItems = sinceAll.flatMap((p) => p.items)
      assert.isTrue(sinceItems.every((e) => Date.parse(e.received_at) >= Date.parse(since)))
      for (const id of ids([...rowsA.slice(1), ...rowsB, ...rowsU])) assert.include(sinceItems.map((e) => e.event_id), id)
      assert.notInclude(sinceItems.map((e) => e.event_id), rowsA[0]!.event_id)
      const later = new Date(Date.parse(since) + 1).toISOString()
      const sinceLater = yield* logs({ owner_id: appA.owner_id, since: later })
      assert.deepStrictEqual(ids(sinceLater.items), ids(rowsA.slice(2)))
      const future = yield* logs({ since: new Date(Date.now() + 3_600_000).toISOString() })
      assert.deepStrictEqual(future.items, [])

      // limit: the newest `limit`, and a cursor to the rest.
      const two = yield* logs({ owner_id: appA.owner_id, limit: 2 })
      assert.deepStrictEqual(two.items.map((e) => e.event_id), byOwner.items.slice(0, 2).map((e) => e.event_id))
      assert.isString(two.next_cursor)
      const exact = yield* logs({ owner_id: appA.owner_id, limit: 3 })
      assert.strictEqual(exact.items.length, 3)
      assert.isNull(exact.next_cursor, "no cursor when nothing follows")

      // The entry tells the event's story.
      const entry = byOwner.items.find((e) => e.event_id === rowsA[2]!.event_id)
      assert.strictEqual(entry?.received_at, rowsA[2]!.received_at.toISOString())
      assert.deepStrictEqual(entry?.value, JSON.parse(routedA[2]!.valueRaw))
      assert.strictEqual(entry?.field, "comments")
      assert.strictEqual(entry?.entry_id, appA.owner_id)
      assert.isString(entry?.delivered_at)
    }))

  it.effect("the cursor pages through everything exactly once, in order, ties included", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("cursor")
      // Events of one webhook share `received_at`: pages must split the tie by event_id.
      const batch = Array.from({ length: 7 }, () => commentEvent(workerApp.owner_id))
      yield* send([batch.slice(0, 4)])
      yield* send([batch.slice(4)])
      const single = yield* sendEach(workerApp.owner_id, 3)
      yield* send([[single[0]!]]) // a duplicate
      yield* send([[batch[0]!]])
      yield* send([[batch[5]!]])
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 10 })).length, 10)
      yield* settledRows([...batch, ...single])
      yield* quiescent

      const sql = yield* SqlClient.SqlClient
      const total = (yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie))[0]?.n
      const everything = yield* logs({ limit: 500 })
      assert.strictEqual(everything.items.length, total)
      assert.isNull(everything.next_cursor)
      assertNewestFirst(everything.items)

      for (
        const [query, expected] of [
          [{}, everything.items.map((e) => e.event_id)],
          [{ owner_id: workerApp.owner_id }, everything.items.filter((e) => e.owner_id === workerApp.owner_id).map((e) => e.event_id)],
          [{ worker_app_id: workerApp.id }, everything.items.filter((e) => e.worker_app_id === workerApp.id).map((e) => e.event_id)],
          [{ status: "routed" }, everything.items.filter((e) => e.status === "routed").map((e) => e.event_id)]
        ] as const
      ) {
        assert.isAtLeast(expected.length, 10, JSON.stringify(query))
        for (const limit of [1, 2, 3, 4]) {
          const pages = yield* allPages({ ...query, limit })
          const seen = pages.flatMap((p) => p.items.map((e) => e.event_id))
          assert.deepStrictEqual(seen, expected, `${JSON.stringify(query)} limit=${limit}`)
          assert.strictEqual(pages.length, Math.ceil(expected.length / limit))
          assert.isTrue(pages.slice(0, -1).every((p) => p.items.length === limit && p.next_cursor !== null))
          assert.isNull(pages[pages.length - 1]!.next_cursor)
        }
      }

      // Duplicates page by their own order (arrival, then id): every one once.
      const duplicates = yield* logs({ status: "duplicate", limit: 500 })
      assert.isAtLeast(duplicates.items.length, 3)
      const key = (e: WebhookLogEntry) => `${e.event_id}@${e.received_at}`
      for (const limit of [1, 2]) {
        const pages = yield* allPages({ status: "duplicate", limit })
        assert.deepStrictEqual(pages.flatMap((p) => p.items.map(key)), duplicates.items.map(key), `limit=${limit}`)
        assert.isNull(pages[pages.length - 1]!.next_cursor)
      }
    }))

  it.effect("webhook logs refuse a bogus cursor, status, since or limit with 4xx, never 5xx", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
      const cursors = [
        "not-a-cursor",
        "%%%",
        b64({ received_at: "2026-01-01T00:00:00.000Z" }),
        b64(["2026-01-01T00:00:00.000Z"]),
        b64(["not a time", "a".repeat(64)]),
        b64([1, 2]),
        b64(null)
      ]
      for (const cursor of cursors) {
        for (const status of [undefined, "routed", "duplicate"]) {
          const query = new URLSearchParams({ cursor, ...(status === undefined ? {} : { status }) })
          const response = yield* app.request<unknown>(`/monitoring/webhook-logs?${query.toString()}`)
          assert.strictEqual(response.status, 422, `cursor ${cursor} status ${status}: ${response.text}`)
        }
      }
      for (
        const [query, loc] of [
          ["status=bogus", "query.status"],
          ["status=ROUTED", "query.status"],
          ["since=yesterday", "query.since"],
          ["since=", "query.since"],
          // not calendar dates (no 29 February in a century year not divisible by 400); Postgres refuses them
          ["since=1900-02-29T00:00:00Z", "query.since"],
          ["since=2100-02-29", "query.since"],
          ["limit=0", "query.limit"],
          ["limit=501", "query.limit"],
          ["limit=ten", "query.limit"],
          ["owner_id=abc", "query.owner_id"],
          ["worker_app_id=not-a-uuid", "query.worker_app_id"]
        ] as const
      ) {
        const response = yield* app.request<unknown>(`/monitoring/webhook-logs?${query}`)
        assert.strictEqual(response.status, 422, `${query}: ${response.text}`)
        assert.include(locsOf(response.body), loc, query)
      }
    }))

  it.effect("a caller's cursor or time is never a server fault: another listing's cursor, out-of-range times", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      // A real cursor of the event listing (its key is an event id), and one forged with a non-numeric key,
      // both handed to the duplicates listing (whose key is a number).
      const workerApp = yield* createWorkerApp("cross-cursor")
      yield* sendEach(workerApp.owner_id, 2)
      assert.strictEqual((yield* amqp.drainQueue(workerApp.queue_name, { expected: 2 })).length, 2)
      const first = yield* logs({ owner_id: workerApp.owner_id, limit: 1 })
      assert.isString(first.next_cursor)
      const forged = Buffer.from(JSON.stringify(["2026-01-01T00:00:00.000Z", "x"])).toString("base64url")
      // A time JavaScript reads but Postgres cannot hold.
      const ancient = "-271821-04-20T00:00:00.000Z"
      const requests: ReadonlyArray<readonly [string, string, unknown]> = [
        ["GET", `/monitoring/webhook-logs?${new URLSearchParams({ status: "duplicate", cursor: first.next_cursor ?? "" })}`, undefined],
        ["GET", `/monitoring/webhook-logs?${new URLSearchParams({ status: "duplicate", cursor: forged })}`, undefined],
        ["GET", `/monitoring/webhook-logs?${new URLSearchParams({ since: ancient })}`, undefined],
        [
          "GET",
          `/monitoring/webhook-logs?${new URLSearchParams({ cursor: Buffer.from(JSON.stringify([ancient, "a".repeat(64)])).toString("base64url") })}`,
          undefined
        ],
        ["POST", "/monitoring/replay", { since: ancient }]
      ]
      const answers: Array<string> = []
      for (const [method, path, json] of requests) {
        const response = yield* app.request<unknown>(path, { method, json })
        answers.push(`${method} ${path} ${JSON.stringify(json ?? null)} -> ${response.status} ${response.text}`)
      }
      assert.deepStrictEqual(answers.filter((a) => !/ -> 4\d\d /.test(a)), [], "each answered 4xx")
    }))
})
