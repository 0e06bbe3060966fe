import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient, type Statement } from "effect/sql"
import { backlogSelect, duplicatesPerMinute, eventsPerMinute, rawValueSelect, routedPerApp, webhookLogSelect } from "../../src/services/JournalReads.ts"
import { Amqp } from "../support/Amqp.ts"
import { JournalDb, SECRET_KEY, TestApp } from "../support/TestApp.ts"
import { createWorkerApp } from "../support/WorkerApps.ts"

// Every console page answers within 300 ms on a journal of 1,000,000 rows, and its queries stay on indexes.

const ROWS = 1_000_000
const DUPLICATES = 50_000
const OWNERS = 20
/** One event every half second: the journal spans about six days (inside the seven-day retention). */
const SPACING_SECONDS = 0.5
const PAGE_BUDGET_MS = 300
const RUNS = 5

const environment = Layer.mergeAll(JournalDb, Amqp.layer("console_big")).pipe(Layer.provideMerge(TestApp.layer("console_big")))

const ownerOf = (i: number) => `1784140000000${String(i).padStart(4, "0")}`

const seed = (apps: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Owners 0-4 have worker apps; 1 in 100 events is dead-lettered, 6 unroutable, 1 ignored, 2 per 10,000 still pending
    // (leased far ahead, so the sweeper leaves them alone).
    yield* sql`
      INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, media_id, owner_id, worker_app_id,
                                  status, attempts, last_error, value_raw, delivered_at, lease_until)
      SELECT encode(sha256(convert_to('big-' || i, 'UTF8')), 'hex'),
             now() - make_interval(secs => i * ${SPACING_SECONDS}),
             'instagram', 'comments', '1784140000000' || lpad((i % ${OWNERS})::text, 4, '0'), (18000000000 + i)::text,
             '1784140000000' || lpad((i % ${OWNERS})::text, 4, '0'),
             CASE WHEN i % ${OWNERS} < ${apps.length} AND i % 100 NOT BETWEEN 1 AND 6 THEN (${sql.literal(`ARRAY[${apps.map((a) => `'${a}'`).join(",")}]`)}::uuid[])[i % ${OWNERS} + 1] END,
             CASE WHEN i % 10000 < 2 THEN 'pending' WHEN i % 100 = 0 THEN 'dead_lettered' WHEN i % 100 BETWEEN 1 AND 6 THEN 'unroutable'
                  WHEN i % 100 = 7 THEN 'ignored' ELSE 'routed' END,
             1, CASE WHEN i % 100 = 0 THEN 'channel closed' END,
             jsonb_build_object('id', i::text, 'text', 'comment ' || i)::text,
             now() - make_interval(secs => i * ${SPACING_SECONDS}),
             CASE WHEN i % 10000 < 2 THEN now() + interval '1 day' END
      FROM generate_series(1, ${ROWS}) AS i
    `.pipe(Effect.orDie)
    yield* sql`
      INSERT INTO webhook_duplicates (event_id, received_at)
      SELECT encode(sha256(convert_to('big-' || (j * 19), 'UTF8')), 'hex'), now() - make_interval(secs => j * 10)
      FROM generate_series(1, ${DUPLICATES}) AS j
    `.pipe(Effect.orDie)
    // What autovacuum does to a table after this many inserts (so index-only scans can skip the heap).
    yield* sql`VACUUM (ANALYZE) webhook_events`.pipe(Effect.orDie)
    yield* sql`VACUUM (ANALYZE) webhook_duplicates`.pipe(Effect.orDie)
  })

interface PlanNode {
  readonly type: string
  readonly relation: string | undefined
  readonly index: string | undefined
}
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)
const planNodes = (node: unknown): ReadonlyArray<PlanNode> => {
  if (!isRecord(node)) return []
  const children = node["Plans"]
  return [
    {
      type: String(node["Node Type"]),
      relation: typeof node["Relation Name"] === "string" ? node["Relation Name"] : undefined,
      index: typeof node["Index Name"] === "string" ? node["Index Name"] : undefined
    },
    ...(Array.isArray(children) ? children.flatMap(planNodes) : [])
  ]
}

/** EXPLAIN (FORMAT JSON) of a statement the console runs, compiled exactly as it runs. */
const explain = (statement: Statement.Statement<unknown>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [text, params] = statement.compile()
    const rows = yield* sql.unsafe<{ readonly "QUERY PLAN": unknown }>(`EXPLAIN (FORMAT JSON) ${text}`, params).pipe(Effect.orDie)
    const raw = rows[0]?.["QUERY PLAN"]
    const plan: unknown = typeof raw === "string" ? JSON.parse(raw) : raw
    const top = Array.isArray(plan) ? plan[0] : undefined
    return { nodes: planNodes(isRecord(top) ? top["Plan"] : undefined), text: JSON.stringify(plan) }
  })

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

layer(environment, { excludeTestServices: true, timeout: "600 seconds" })("the console on a journal of 1,000,000 rows", (it) => {
  const state: { apps: Array<string>; cookie: string } = { apps: [], cookie: "" }

  it.effect("seeded in one INSERT … SELECT generate_series", () =>
    Effect.gen(function*() {
      for (let i = 0; i < 5; i++) state.apps.push((yield* createWorkerApp(`big-${i}`, ownerOf(i))).id)
      const started = Date.now()
      yield* seed(state.apps)
      console.log(`seeded ${ROWS} journal rows and ${DUPLICATES} duplicates in ${Date.now() - started} ms`)
      const sql = yield* SqlClient.SqlClient
      const count = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie)
      assert.strictEqual(count[0]?.n, ROWS)
    }), { timeout: 600_000 })

  it.effect("the console's statements read indexes, never the whole journal", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const hourAgo = new Date(Date.now() - 3600_000)
      const day = { since: new Date(Date.now() - 2 * 86400_000).toISOString(), until: new Date(Date.now() - 86400_000).toISOString() }
      const statements: ReadonlyArray<readonly [string, Statement.Statement<unknown>]> = [
        ["events per minute", eventsPerMinute(sql, hourAgo)],
        ["duplicates per minute", duplicatesPerMinute(sql, hourAgo)],
        ["backlog", backlogSelect(sql)],
        ["routed per app", routedPerApp(sql, hourAgo)],
        ["raw value", rawValueSelect(sql, "0".repeat(64))],
        ["search by time range", webhookLogSelect(sql, day, undefined, 50)],
        ["search by app and time range", webhookLogSelect(sql, { worker_app_id: state.apps[2]!, ...day }, undefined, 50)],
        ["search by status and time range", webhookLogSelect(sql, { status: "dead_lettered", ...day }, undefined, 50)],
        ["search by owner", webhookLogSelect(sql, { owner_id: ownerOf(7) }, undefined, 50)]
      ]
      for (const [label, statement] of statements) {
        const { nodes, text } = yield* explain(statement)
        assert.isFalse(nodes.some((n) => n.type === "Seq Scan"), `a Seq Scan in ${label}: ${text}`)
        assert.isTrue(nodes.some((n) => n.index !== undefined), `no index read in ${label}: ${text}`)
      }
    }))

  it.effect(`every page answers within ${PAGE_BUDGET_MS} ms (median of ${RUNS})`, () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* TestApp
      const sql = yield* SqlClient.SqlClient
      const measured = yield* Effect.promise(async () => {
        const login = await fetch(`${baseUrl}/console/login`)
        const visitor = login.headers.getSetCookie()[0]!.split(";")[0]!
        const csrf = /name="_csrf" value="([^"]+)"/.exec(await login.text())![1]!
        const signed = await fetch(`${baseUrl}/console/login`, {
          method: "POST",
          redirect: "manual",
          headers: { "content-type": "application/x-www-form-urlencoded", cookie: visitor },
          body: new URLSearchParams({ _csrf: csrf, token: SECRET_KEY }).toString()
        })
        return signed.headers.getSetCookie()[0]!.split(";")[0]!
      })
      state.cookie = measured
      const some = yield* sql<{ readonly event_id: string }>`SELECT event_id FROM webhook_events WHERE status = 'dead_lettered' LIMIT 1`.pipe(Effect.orDie)
      const eventId = some[0]!.event_id
      const firstPage = yield* Effect.promise(async () => {
        const response = await fetch(`${baseUrl}/console/events?status=routed`, { headers: { cookie: state.cookie } })
        return /href="(\/console\/events\?[^"]*cursor=[^"]+)" rel="next"/.exec(await response.text())?.[1]?.replaceAll("&amp;", "&")
      })
      assert.isDefined(firstPage, "the first page links to the next")
      const since = new Date(Date.now() - 3 * 86400_000).toISOString().slice(0, 19)
      const until = new Date(Date.now() - 2 * 86400_000).toISOString().slice(0, 19)
      const pages = [
        "/console",
        "/console/overview/live",
        "/console/apps",
        "/console/events",
        `/console/events?status=dead_lettered`,
        `/console/events?owner_id=${ownerOf(3)}`,
        `/console/events?worker_app_id=${state.apps[1]}&since=${since}&until=${until}`,
        `/console/events?status=duplicate`,
        firstPage!,
        `/console/events/${eventId}`,
        `/console/events/${eventId}/raw`,
        `/console/replay?preview=1&status=dead_lettered&worker_app_id=${state.apps[0]}`,
        `/console/replay?preview=1&owner_id=${ownerOf(9)}&since=${since}`
      ]
      const timings: Array<readonly [string, number]> = []
      for (const path of pages) {
        const runs: Array<number> = []
        for (let i = 0; i < RUNS; i++) {
          const ms = yield* Effect.promise(async () => {
            const started = performance.now()
            const response = await fetch(`${baseUrl}${path}`, { headers: { cookie: state.cookie }, redirect: "manual" })
            await response.text()
            assert.strictEqual(response.status, 200, path)
            return performance.now() - started
          })
          runs.push(ms)
        }
        timings.push([path, median(runs)])
      }
      console.log(timings.map(([path, ms]) => `${ms.toFixed(1).padStart(7)} ms  ${path}`).join("\n"))
      for (const [path, ms] of timings) assert.isBelow(ms, PAGE_BUDGET_MS, path)
    }))
})
