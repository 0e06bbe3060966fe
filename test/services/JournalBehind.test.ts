import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import { parseWebhook } from "../../src/domain/Webhook.ts"
import { insertStatement, type NewRow, type Writer } from "../../src/services/JournalStore.ts"
import { JournalDb, TestApp } from "../support/TestApp.ts"
import { bytesOf, commentEvent, webhookText } from "../support/Webhooks.ts"

/** Pending events of one account this instance already holds, as while the broker is away. */
const HELD = 20_000

/** One new comment of `entryId`, parsed as the intake parses it. */
const newRow = (entryId: string): NewRow => {
  const parsed = parseWebhook(bytesOf(webhookText([[commentEvent(entryId)]])))
  if (parsed._tag === "Failure") throw new Error(parsed.failure.message)
  return { event: parsed.success.events[0]!, receivedAt: new Date(), status: "pending", traceContext: null }
}

/** An older pending event of `key` in the journal, under `holder` (null: none) until `leaseUntil` (SQL; `NULL`: released). */
const olderPending = (
  key: string,
  holder: string | null,
  { leaseUntil = "now() + interval '1 hour'", receivedAt = "now()" }: { readonly leaseUntil?: string; readonly receivedAt?: string } = {}
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, status, value_raw, lease_until, claimed_by)
      VALUES (${`old-${key}`}, ${sql.literal(receivedAt)}, 'instagram', 'comments', ${key}, 'pending', '{}', ${sql.literal(leaseUntil)}, ${holder}::uuid)
    `
  })

/** An instance seen now, and for the next hour. */
const seenInstance = (id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO delivery_instances (id, seen_at) VALUES (${id}::uuid, now() + interval '1 hour')`)

interface PlanNode {
  readonly "Shared Hit Blocks"?: number
  readonly "Shared Read Blocks"?: number
}

/** Runs the journal insert of `rows` under EXPLAIN ANALYZE: the buffers it touched and the rows it wrote. */
const insertExplained = (rows: ReadonlyArray<NewRow>, writer: Writer) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [text, params] = (yield* insertStatement(sql, rows, [], writer)).compile()
    const plan = yield* sql.unsafe<{ readonly "QUERY PLAN": unknown }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, params)
    const raw = plan[0]?.["QUERY PLAN"]
    const top = (typeof raw === "string" ? JSON.parse(raw) : raw) as ReadonlyArray<{ readonly Plan: PlanNode }>
    const node = top[0]!.Plan
    const buffers = (node["Shared Hit Blocks"] ?? 0) + (node["Shared Read Blocks"] ?? 0)
    // EXPLAIN ANALYZE ran the insert: the rows are there.
    const written = yield* sql<{ readonly n: number }>`
      SELECT count(*)::int AS n FROM webhook_events WHERE event_id = ANY(${rows.map((row) => row.event.eventId)})
    `
    return { buffers, written: written[0]?.n ?? 0 }
  })

/** The `behind` the insert answers for one new event of `entryId`. */
const behindOf = (entryId: string, writer: Writer) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* Effect.flatten(insertStatement(sql, [newRow(entryId)], [], writer))
    assert.strictEqual(rows.length, 1)
    return rows[0]!.behind
  })

layer(Layer.mergeAll(JournalDb).pipe(Layer.provideMerge(TestApp.layer("journal_behind", { sweepInterval: Duration.hours(1) }))), {
  excludeTestServices: true,
  timeout: "120 seconds"
})("the journal insert's wait behind older events of other holders", (it) => {
  // The service's own sweeper would take the gone holders' events below; it waits an hour here.
  const me = randomUUID()
  const writer: Writer = { me, startedAt: new Date(Date.now() - 60_000), leaseUntil: new Date(Date.now() + 3_600_000) }

  it.effect(`with ${HELD.toLocaleString("en")} pending events of its account held by this instance, reads a few pages, not them`, () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const key = `held-${randomUUID()}`
      yield* seenInstance(me)
      yield* sql`
        INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, status, value_raw, lease_until, claimed_by)
        SELECT 'held-' || g || '-' || ${key}, now(), 'instagram', 'comments', ${key}, 'pending', '{}', now() + interval '1 hour', ${me}::uuid
        FROM generate_series(1, ${HELD}) g
      `
      yield* sql`ANALYZE webhook_events`
      const { buffers, written } = yield* insertExplained([newRow(key), newRow(key)], writer)
      assert.strictEqual(written, 2)
      // Reading the account's held events would touch thousands of pages (about 10 events a page).
      assert.isBelow(buffers, 300, `buffers touched: ${buffers}`)
      assert.isFalse(yield* behindOf(key, writer))
    }))

  it.effect("waits behind an older event of a holder that is gone, or of one released at a shutdown", () =>
    Effect.gen(function*() {
      const [gone, released] = [`gone-${randomUUID()}`, `released-${randomUUID()}`]
      // A holder that stopped renewing: never seen, so gone.
      yield* olderPending(gone, randomUUID())
      // Released at a clean shutdown: the lease ended, the holder named and forgotten.
      yield* olderPending(released, randomUUID(), { leaseUntil: "NULL" })
      assert.isTrue(yield* behindOf(gone, writer))
      assert.isTrue(yield* behindOf(released, writer))
    }))

  it.effect("waits behind an event released by a holder still seen, or released with no holder by an earlier version", () =>
    Effect.gen(function*() {
      const [stillSeen, unheld, holder] = [`seen-${randomUUID()}`, `unheld-${randomUUID()}`, randomUUID()]
      // Its shutdown released its events, but its instance row is still there (not yet forgotten).
      yield* seenInstance(holder)
      yield* olderPending(stillSeen, holder, { leaseUntil: "NULL" })
      // An instance of an earlier version released it with no holder (a rolling upgrade).
      yield* olderPending(unheld, null, { leaseUntil: "NULL" })
      assert.isTrue(yield* behindOf(stillSeen, writer))
      assert.isTrue(yield* behindOf(unheld, writer))
    }))

  it.effect("does not wait behind a live instance's event written after this one started", () =>
    Effect.gen(function*() {
      const [live, key] = [randomUUID(), `live-${randomUUID()}`]
      yield* seenInstance(live)
      yield* olderPending(key, live)
      assert.isFalse(yield* behindOf(key, writer))
      // An event that live instance wrote before this one started is waited for (a restart's case).
      const before = `before-${randomUUID()}`
      yield* olderPending(before, live, { receivedAt: "now() - interval '2 minutes'" })
      assert.isTrue(yield* behindOf(before, writer))
    }))
})
