import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import type { EventStatus, WebhookLogEntry } from "../../src/domain/WebhookLog.ts"
import { WorkerAppId } from "../../src/domain/WorkerApp.ts"
import { AppNoConfig } from "../../src/layers/App.ts"
import { AppConfig } from "../../src/services/AppConfig.ts"
import { webhookLogSelect, type WebhookLogQuery } from "../../src/services/JournalReads.ts"
import { JournalDb, TestApp, testConfig } from "../support/TestApp.ts"
import { eventually } from "../support/WorkerApps.ts"
import { allPages, assertNewestFirst, type LogPage, logs, type LogsQuery as EndpointQuery } from "../support/Monitoring.ts"

// ---------------------------------------------------------------------------------------------
// A journal of 100,000 rows: the webhook-logs queries are index scans, and the endpoint is right.
// ---------------------------------------------------------------------------------------------

const SEEDED = 100_000
const SEEDED_DUPLICATES = 10_000
const SEED_APPS = [0, 1, 2, 3, 4].map((k) => WorkerAppId.make(`00000000-0000-4000-8000-00000000000${k}`))
const SEED_STATUSES = [
  "routed",
  "routed",
  "routed",
  "routed",
  "routed",
  "routed",
  "unroutable",
  "unroutable",
  "dead_lettered",
  "ignored"
] as const
// Whole seconds: the service writes millisecond times, and so does the seed.
const seedBase = new Date(Math.floor(Date.now() / 1000) * 1000)

interface SeededRow {
  readonly event_id: string
  readonly at: number
  readonly status: EventStatus
  readonly owner_id: string
  readonly worker_app_id: string | null
}

/** Row `i` of the seed, as the INSERT below builds it; two rows share each second, so ties are common. */
const seededRow = (i: number): SeededRow => ({
  event_id: createHash("sha256").update(`seed-${i}`).digest("hex"),
  at: seedBase.getTime() - Math.floor(i / 2) * 1000,
  status: SEED_STATUSES[i % 10]!,
  owner_id: `1789000${i % 100}`,
  worker_app_id: i % 10 < 6 ? SEED_APPS[Math.floor(i / 10) % 5]! : null
})

/** The whole seed, newest first as the service orders it: received_at, then event_id, descending. */
const seededNewestFirst = (): ReadonlyArray<SeededRow> =>
  Array.from({ length: SEEDED }, (_, k) => seededRow(k + 1)).sort((a, b) =>
    a.at !== b.at ? b.at - a.at : a.event_id < b.event_id ? 1 : a.event_id > b.event_id ? -1 : 0
  )

/** Seeds the journal once per database (both tests of the layer need it; either may run alone). */
const seedJournal = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const existing = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie)
  if (existing[0]?.n === SEEDED) return
  const [a0, a1, a2, a3, a4] = SEED_APPS
  yield* sql`
    INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, media_id, owner_id, worker_app_id,
                                status, attempts, value_raw, delivered_at)
    SELECT encode(sha256(convert_to('seed-' || i, 'UTF8')), 'hex'),
           ${seedBase}::timestamptz - make_interval(secs => i / 2),
           'instagram', 'comments', '1789000' || (i % 100), NULL, '1789000' || (i % 100),
           CASE WHEN i % 10 < 6 THEN (CASE (i / 10) % 5
             WHEN 0 THEN ${a0}::uuid WHEN 1 THEN ${a1}::uuid WHEN 2 THEN ${a2}::uuid WHEN 3 THEN ${a3}::uuid
             ELSE ${a4}::uuid END) END,
           (ARRAY['routed', 'routed', 'routed', 'routed', 'routed', 'routed', 'unroutable', 'unroutable',
                  'dead_lettered', 'ignored'])[i % 10 + 1],
           1, jsonb_build_object('id', i::text)::text, ${seedBase}::timestamptz
    FROM generate_series(1, ${SEEDED}) AS i
  `.pipe(Effect.orDie)
  // Meta's redeliveries of some of them, each a little after the event.
  yield* sql`
    INSERT INTO webhook_duplicates (event_id, received_at)
    SELECT encode(sha256(convert_to('seed-' || (j * 7 % ${SEEDED} + 1), 'UTF8')), 'hex'),
           ${seedBase}::timestamptz - make_interval(secs => j / 3) + interval '500 milliseconds'
    FROM generate_series(1, ${SEEDED_DUPLICATES}) AS j
  `.pipe(Effect.orDie)
  yield* sql`ANALYZE webhook_events`.pipe(Effect.orDie)
  yield* sql`ANALYZE webhook_duplicates`.pipe(Effect.orDie)
})

interface PlanNode {
  readonly type: string
  readonly relation: string | undefined
  readonly index: string | undefined
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const planNodes = (node: unknown): ReadonlyArray<PlanNode> => {
  if (!isRecord(node)) return []
  const relation = node["Relation Name"]
  const index = node["Index Name"]
  const children = node["Plans"]
  return [
    {
      type: String(node["Node Type"]),
      relation: typeof relation === "string" ? relation : undefined,
      index: typeof index === "string" ? index : undefined
    },
    ...(Array.isArray(children) ? children.flatMap(planNodes) : [])
  ]
}

interface LogsQuery {
  readonly status?: WebhookLogQuery["status"]
  readonly owner_id?: string
  readonly worker_app_id?: string
  readonly since?: string
  readonly cursor?: readonly [string, string]
}

/**
 * `EXPLAIN (FORMAT JSON)` of the statement `Operations.webhookLogs` runs for this query
 * (`webhookLogSelect`, the same builder), `LIMIT` of the default page + 1.
 */
const explainLogs = (query: LogsQuery, limit = 100) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [text, params] = webhookLogSelect(sql, query, query.cursor, limit).compile()
    const statement = sql.unsafe<{ readonly "QUERY PLAN": unknown }>(`EXPLAIN (FORMAT JSON) ${text}`, params)
    const rows = yield* statement.pipe(Effect.orDie)
    const raw = rows[0]?.["QUERY PLAN"]
    const plan: unknown = typeof raw === "string" ? JSON.parse(raw) : raw
    const top = Array.isArray(plan) ? plan[0] : undefined
    return { nodes: planNodes(isRecord(top) ? top["Plan"] : undefined), text: JSON.stringify(plan) }
  })

layer(
  Layer.mergeAll(JournalDb).pipe(Layer.provideMerge(TestApp.layer("monitoring_plan"))),
  { excludeTestServices: true, timeout: "120 seconds" }
)("webhook logs on a journal of 100,000 rows", (it) => {
  const expected = seededNewestFirst()
  const middle = expected[Math.floor(SEEDED / 2)]!
  const middleCursor = [new Date(middle.at).toISOString(), middle.event_id] as const

  it.effect("every filter's query is an index scan in the journal's order: no Seq Scan, no Sort", () =>
    Effect.gen(function*() {
      yield* seedJournal
      const sql = yield* SqlClient.SqlClient
      const count = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie)
      assert.strictEqual(count[0]?.n, SEEDED)

      const queries: ReadonlyArray<LogsQuery> = [
        {},
        { status: "routed" },
        { status: "unroutable" },
        { status: "dead_lettered" },
        { status: "ignored" },
        { status: "pending" },
        { owner_id: "178900042" },
        { worker_app_id: SEED_APPS[3]! },
        { since: new Date(seedBase.getTime() - 600_000).toISOString() },
        { cursor: middleCursor },
        { status: "unroutable", cursor: middleCursor },
        { owner_id: "178900042", cursor: middleCursor },
        { worker_app_id: SEED_APPS[3]!, cursor: middleCursor },
        { status: "routed", owner_id: "17890007" },
        { status: "duplicate" },
        { status: "duplicate", cursor: [new Date(seedBase.getTime() - 1_000_000).toISOString(), "5000"] },
        { status: "duplicate", owner_id: "178900042" }
      ]
      for (const query of queries) {
        const { nodes, text } = yield* explainLogs(query)
        const label = `${JSON.stringify(query)}: ${text}`
        assert.isFalse(
          nodes.some((n) => n.type === "Seq Scan" && n.relation === "webhook_events"),
          `a Seq Scan of webhook_events in ${label}`
        )
        assert.isTrue(
          nodes.some((n) =>
            (n.relation === "webhook_events" && (n.type === "Index Scan" || n.type === "Index Only Scan")) ||
            (n.type === "Bitmap Index Scan" && (n.index ?? "").startsWith("webhook_events_"))
          ),
          `no index scan of webhook_events in ${label}`
        )
        const filtersEvents = query.owner_id !== undefined || query.worker_app_id !== undefined
        if (query.status === "pending") {
          // No pending rows: the planner may read either (empty) partial index of pending rows and sort nothing.
          assert.isTrue(
            nodes.some((n) =>
              n.index === "webhook_events_pending_idx" || n.index === "webhook_events_pending_key_idx" ||
              n.index === "webhook_events_pending_holder_idx" || n.index === "webhook_events_status_idx"
            ),
            `pending rows not read by an index of theirs in ${label}`
          )
        } else if (query.status !== "duplicate") {
          // The index hands rows over in the page's order: the LIMIT stops the scan early.
          assert.isFalse(nodes.some((n) => n.type === "Sort" || n.type === "Incremental Sort"), `a Sort in ${label}`)
        } else if (!filtersEvents) {
          assert.isFalse(nodes.some((n) => n.type === "Seq Scan"), `a Seq Scan in ${label}`)
          assert.isFalse(nodes.some((n) => n.type === "Sort" || n.type === "Incremental Sort"), `a Sort in ${label}`)
          assert.isTrue(
            nodes.some((n) => n.relation === "webhook_duplicates" && n.index === "webhook_duplicates_received_idx"),
            `duplicates not read in order by their index in ${label}`
          )
        }
      }
    }))

  it.effect("the endpoint gives the right rows for each filter, and the cursor walks all 100,000 once", () =>
    Effect.gen(function*() {
      yield* seedJournal
      const ids = (rows: ReadonlyArray<{ readonly event_id: string }>) => rows.map((r) => r.event_id)
      const cases: ReadonlyArray<readonly [EndpointQuery, (row: SeededRow) => boolean, number]> = [
        [{}, () => true, 2],
        [{ status: "routed" }, (r) => r.status === "routed", 2],
        [{ status: "unroutable" }, (r) => r.status === "unroutable", 2],
        [{ status: "dead_lettered" }, (r) => r.status === "dead_lettered", 2],
        [{ status: "ignored" }, (r) => r.status === "ignored", 2],
        [{ status: "pending" }, (r) => r.status === "pending", 1],
        [{ owner_id: "178900042" }, (r) => r.owner_id === "178900042", 3],
        [{ worker_app_id: SEED_APPS[3]! }, (r) => r.worker_app_id === SEED_APPS[3], 2],
        [{ status: "unroutable", owner_id: "17890007" }, (r) => r.status === "unroutable" && r.owner_id === "17890007", 3],
        [
          { since: new Date(seedBase.getTime() - 600_000).toISOString() },
          (r) => r.at >= seedBase.getTime() - 600_000,
          4
        ]
      ]
      for (const [query, keep, pagesToRead] of cases) {
        const want = expected.filter(keep)
        const got: Array<WebhookLogEntry> = []
        let cursor: string | null = null
        for (let page = 0; page < pagesToRead; page++) {
          const response: LogPage = yield* logs(cursor === null ? { ...query, limit: 500 } : { ...query, limit: 500, cursor })
          got.push(...response.items)
          cursor = response.next_cursor
          if (cursor === null) break
        }
        const label = JSON.stringify(query)
        assert.deepStrictEqual(ids(got), ids(want.slice(0, got.length)), label)
        assert.strictEqual(got.length, Math.min(want.length, pagesToRead * 500), label)
        assert.strictEqual(cursor === null, want.length <= got.length, `${label}: next_cursor at the end`)
        const first = got[0]
        const wantFirst = want[0]
        if (wantFirst !== undefined) {
          assert.deepInclude(first, {
            event_id: wantFirst.event_id,
            received_at: new Date(wantFirst.at).toISOString(),
            status: wantFirst.status,
            owner_id: wantFirst.owner_id,
            worker_app_id: wantFirst.worker_app_id
          }, label)
        }
      }

      // All 100,000, 500 at a time: each exactly once, in order, and the cursor ends.
      const walked = yield* allPages({ limit: 500 })
      assert.strictEqual(walked.length, SEEDED / 500)
      assert.isNull(walked[walked.length - 1]!.next_cursor)
      const all = walked.flatMap((p) => ids(p.items))
      assert.strictEqual(new Set(all).size, SEEDED)
      assert.deepStrictEqual(all, ids(expected))

      // Duplicates: newest first by arrival, paged without overlap.
      const duplicates = yield* allPages({ status: "duplicate", limit: 500, since: new Date(seedBase.getTime() - 600_000).toISOString() })
      const items = duplicates.flatMap((p) => p.items)
      // Redelivery j arrives at base - floor(j / 3) s + 0.5 s: those with floor(j / 3) <= 600 are in.
      const inWindow = Array.from({ length: SEEDED_DUPLICATES }, (_, k) => k + 1).filter((j) => Math.floor(j / 3) <= 600)
      assert.strictEqual(items.length, inWindow.length)
      assert.isTrue(items.every((e) => e.status === "duplicate"))
      assertNewestFirst(items, false)
    }))
})

// ---------------------------------------------------------------------------------------------
// Retention: a second instance with a one-hour JOURNAL_RETENTION, started against the journal,
// deletes finished events and duplicates older than that at start-up, in batches, and nothing else.
// ---------------------------------------------------------------------------------------------

layer(
  Layer.mergeAll(JournalDb).pipe(Layer.provideMerge(TestApp.layer("monitoring_retention"))),
  { excludeTestServices: true, timeout: "60 seconds" }
)("journal retention", (it) => {
  it.effect("deletes finished events and duplicates older than JOURNAL_RETENTION, keeps pending and recent ones", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const sql = yield* SqlClient.SqlClient
      // 2,500 old finished events (more than one deletion batch), 3 old but pending (leased far ahead,
      // so the sweeper leaves them), 10 finished 50 minutes ago; 1,500 old duplicates and 5 recent ones.
      yield* sql`
        INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, owner_id, status, attempts,
                                    value_raw, delivered_at, lease_until)
        SELECT encode(sha256(convert_to(kind || '-' || i, 'UTF8')), 'hex'),
               now() - CASE WHEN kind = 'recent' THEN interval '50 minutes' ELSE interval '2 hours' END
                     - make_interval(secs => i),
               'instagram', 'comments', '17890001', '17890001',
               CASE WHEN kind = 'pending' THEN 'pending'
                    ELSE (ARRAY['routed', 'unroutable', 'dead_lettered', 'ignored'])[i % 4 + 1] END,
               1, '{}',
               CASE WHEN kind = 'pending' THEN NULL ELSE now() END,
               CASE WHEN kind = 'pending' THEN now() + interval '1 hour' END
        FROM (VALUES ('old', 2500), ('pending', 3), ('recent', 10)) AS k(kind, n), generate_series(1, n) AS i
      `.pipe(Effect.orDie)
      yield* sql`
        INSERT INTO webhook_duplicates (event_id, received_at)
        SELECT encode(sha256(convert_to('old-' || i, 'UTF8')), 'hex'),
               now() - CASE WHEN i <= 1500 THEN interval '2 hours' ELSE interval '50 minutes' END
        FROM generate_series(1, 1505) AS i
      `.pipe(Effect.orDie)

      const counts = sql<{
        readonly old_finished: number
        readonly old_pending: number
        readonly recent: number
        readonly old_duplicates: number
        readonly recent_duplicates: number
      }>`
        SELECT
          (SELECT count(*)::int FROM webhook_events WHERE received_at < now() - interval '1 hour' AND status <> 'pending') AS old_finished,
          (SELECT count(*)::int FROM webhook_events WHERE received_at < now() - interval '1 hour' AND status = 'pending') AS old_pending,
          (SELECT count(*)::int FROM webhook_events WHERE received_at >= now() - interval '1 hour') AS recent,
          (SELECT count(*)::int FROM webhook_duplicates WHERE received_at < now() - interval '1 hour') AS old_duplicates,
          (SELECT count(*)::int FROM webhook_duplicates WHERE received_at >= now() - interval '1 hour') AS recent_duplicates
      `.pipe(Effect.orDie, Effect.map((rows) => ({ ...rows[0] })))

      // Seeded as meant (the running instance keeps 7 days, and its retention ran at its start).
      assert.deepStrictEqual(yield* counts, {
        old_finished: 2500,
        old_pending: 3,
        recent: 10,
        old_duplicates: 1500,
        recent_duplicates: 5
      })

      yield* Effect.scoped(Effect.gen(function*() {
        // Fresh: none of the running instance's layers are shared with this one.
        yield* Layer.build(Layer.fresh(AppNoConfig.pipe(
          Layer.provide(AppConfig.layerWith(testConfig(`postgres://postgres@127.0.0.1:5432/${app.database}`, {
            journalRetention: Duration.hours(1)
          })))
        )))
        const after = yield* eventually(counts, (c) => c.old_finished === 0 && c.old_duplicates === 0)
        assert.deepStrictEqual(after, {
          old_finished: 0,
          old_pending: 3,
          recent: 10,
          old_duplicates: 0,
          recent_duplicates: 5
        })
      }))
    }))
})
