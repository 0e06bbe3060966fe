import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import fc from "fast-check"
import { Amqp } from "../support/Amqp.ts"
import { JournalDb, TestApp } from "../support/TestApp.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"
import { sign, uniqueId } from "../support/Webhooks.ts"

// A lasting check of issue 13: signed bodies mixing valid changes with hostile values in every
// field. Each answer is 200, 400 or 413, never a 5xx; every event of a 200 is journaled exactly
// once and, when it can be delivered, reaches exactly one queue; the service stays healthy.

/** Generated bodies (the cases) per run; each carries up to three entries of generated events. */
const RUNS = 10_000
/** Bodies in flight at once. */
const CONCURRENCY = 8
const OWNERS = 4


const hostileText = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.constantFrom("\u0000", "a\u0000b", "\ud800", "\udfff x", "e\u0301", "\u00e9", "\ud83d\ude00", "\\", "\"", "\u2028", "' OR 1=1 --", "")
)
const numberLiteral = fc.oneof(
  fc.integer().map(String),
  fc.constantFrom("1e19", "1e400", "-1e400", "1e-400", "9223372036854775807", "1.5", "-0", "0", "1764201600", "1".repeat(80))
)
const deep = fc.integer({ min: 1, max: 3000 }).map((n) => "[".repeat(n) + "1" + "]".repeat(n))
const value = fc.oneof(
  { weight: 4, arbitrary: fc.record({ id: fc.string({ maxLength: 10 }), text: hostileText }).map((v) => JSON.stringify({ ...v, id: `${v.id}-${uniqueId()}` })) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: hostileText.map((t) => JSON.stringify({ text: t, media: { id: t } })) },
  { weight: 1, arbitrary: numberLiteral.map((n) => `{"n":${n},"id":"${uniqueId()}"}`) },
  { weight: 1, arbitrary: hostileText.map((t) => JSON.stringify(t)) },
  { weight: 1, arbitrary: deep }
)
const field = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("comments", "live_comments", "mentions", "feed", "story_insights") },
  { weight: 2, arbitrary: hostileText.filter((t) => t.length > 0) },
  { weight: 1, arbitrary: fc.integer({ min: 240, max: 300 }).map((n) => "f".repeat(n)) }
)
const messagingItem = fc.tuple(fc.constantFrom("message", "postback", "read", "reaction", "referral", "optin"), hostileText)
  .map(([key, text]) => `{"sender":{"id":"${uniqueId()}"},"timestamp":1,${JSON.stringify(key)}:{"mid":"${uniqueId()}","text":${JSON.stringify(text)}}}`)

const body = (owners: ReadonlyArray<string>) => {
  const entryId = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...owners).map((o) => JSON.stringify(o)) },
    { weight: 1, arbitrary: fc.constantFrom(...owners) }, // a number, digits as written
    // Hostile ids can never be delivered (invalid): an id that could would be unroutable, and
    // chatico.unroutable is shared with other test files.
    { weight: 1, arbitrary: hostileText.map((t) => JSON.stringify(`${t}\u0000`)) },
    { weight: 1, arbitrary: fc.constantFrom(JSON.stringify("\ud800"), JSON.stringify("7".repeat(200)), "7".repeat(129)) }
  )
  const time = fc.option(fc.oneof(numberLiteral, hostileText.map((t) => JSON.stringify(t))), { nil: undefined })
  const changes = fc.array(fc.tuple(field, value).map(([f, v]) => `{"field":${JSON.stringify(f)},"value":${v}}`), { maxLength: 8 })
  const entry = fc.tuple(
    entryId,
    time,
    fc.option(changes, { nil: undefined }),
    fc.option(fc.array(messagingItem, { maxLength: 3 }), { nil: undefined }),
    fc.option(fc.array(messagingItem, { maxLength: 2 }), { nil: undefined }),
    fc.option(fc.tuple(field, value), { nil: undefined, freq: 6 }),
    fc.boolean()
  ).map(([id, t, c, m, s, flat, unknownKey]) => {
    const parts = [`"id":${id}`]
    if (t !== undefined) parts.push(`"time":${t}`)
    if (c !== undefined) parts.push(`"changes":[${c.join(",")}]`)
    if (m !== undefined) parts.push(`"messaging":[${m.join(",")}]`)
    if (s !== undefined) parts.push(`"standby":[${s.join(",")}]`)
    if (flat !== undefined) parts.push(`"field":${JSON.stringify(flat[0])}`, `"value":${flat[1]}`)
    if (unknownKey) parts.push(`"something_new":{"x":${JSON.stringify(uniqueId())}}`)
    return `{${parts.join(",")}}`
  })
  const object = fc.oneof(
    { weight: 8, arbitrary: fc.constant("instagram") },
    { weight: 1, arbitrary: fc.constant("page") },
    { weight: 1, arbitrary: hostileText.filter((t) => t !== "instagram") }
  )
  return fc.tuple(object, fc.array(entry, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.integer({ min: 0, max: 9 }))
    .map(([o, entries, redeliver, broken]) => ({
      // One body in ten is made not a webhook (400) in a way Meta never would.
      text: broken === 0
        ? `{"object":${JSON.stringify(o)},"entry":[${entries.join(",")},{"id":"1","changes":"not a list"}]}`
        : `{"object":${JSON.stringify(o)},"entry":[${entries.join(",")}]}`,
      redeliver
    }))
}

interface Accepted {
  readonly events: number
  readonly duplicates: number
  readonly event_ids: ReadonlyArray<string>
}
const isAccepted = (u: unknown): u is Accepted =>
  typeof u === "object" && u !== null && "event_ids" in u && Array.isArray(u.event_ids) && "events" in u && "duplicates" in u

const post = (baseUrl: string, text: string) =>
  fetch(`${baseUrl}/webhook`, {
    method: "POST",
    body: text,
    headers: { "content-type": "application/json", "x-hub-signature-256": sign(text) }
  }).then(async (response) => ({ status: response.status, json: (await response.json()) as unknown }))

layer(Layer.mergeAll(JournalDb, Amqp.layer("signed_property")).pipe(Layer.provideMerge(TestApp.layer("signed_property"))), {
  excludeTestServices: true,
  timeout: "600 seconds"
})("signed hostile bodies (property)", (it) => {
  it.effect(`${RUNS} signed bodies: 200/400/413 only, each accepted event journaled once and delivered once`, () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const sql = yield* SqlClient.SqlClient
      const workers = yield* Effect.forEach(Array.from({ length: OWNERS }, (_, i) => i), (i) => createWorkerApp(`owner${i}`))
      const accepted = new Set<string>()
      const statuses = new Map<number, number>()
      let bodies = 0
      let events = 0
      let redeliveries = 0
      const started = Date.now()
      // The bodies are drawn from the generator with a fixed seed and posted CONCURRENCY at a time
      // (fast-check's runner posts one at a time, which took over 10 minutes); every failing body is kept.
      const failures: Array<string> = []
      const check = async ({ text, redeliver }: { readonly text: string; readonly redeliver: boolean }) => {
        bodies++
        const { status, json } = await post(app.baseUrl, text)
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if (status !== 200) return status === 400 || status === 413
        if (!isAccepted(json) || json.event_ids.length !== json.events) return false
        events += json.events
        for (const id of json.event_ids) accepted.add(id)
        if (!redeliver) return true
        // Meta's redelivery of the same bytes: every event a duplicate, the same ids.
        redeliveries++
        const again = await post(app.baseUrl, text)
        return again.status === 200 && isAccepted(again.json) && again.json.duplicates === again.json.events &&
          again.json.event_ids.join() === json.event_ids.join()
      }
      const samples = fc.sample(body(workers.map((w) => w.owner_id)), { numRuns: RUNS, seed: 20261201 })
      yield* Effect.forEach(samples, (sample) =>
        Effect.promise(async () => {
          if (!(await check(sample))) failures.push(sample.text.slice(0, 2000))
        }), { concurrency: CONCURRENCY, discard: true })
      assert.deepStrictEqual(failures.slice(0, 3), [], `${failures.length} bodies failed`)
      const ids = [...accepted]
      console.log(
        `property | ${RUNS} signed bodies (+${redeliveries} redeliveries), ${events} generated events accepted, ` +
          `${ids.length} distinct; answers ${JSON.stringify([...statuses])}; ${Date.now() - started} ms`
      )
      assert.strictEqual(bodies, RUNS)
      for (const status of statuses.keys()) assert.include([200, 400, 413], status)

      // Journaled exactly once, and nothing left pending.
      const settled = yield* eventually(
        sql<{ readonly event_id: string; readonly status: string; readonly worker_app_id: string | null; readonly delivered: boolean }>`
          SELECT event_id, status, worker_app_id::text AS worker_app_id, delivered_at IS NOT NULL AS delivered FROM webhook_events
          WHERE event_id IN (SELECT unnest(${ids}::text[]))
        `.pipe(Effect.orDie),
        (rows) => rows.every((row) => row.status !== "pending"),
        60
      )
      assert.strictEqual(settled.length, ids.length)
      const byStatus = new Map<string, number>()
      for (const row of settled) byStatus.set(row.status, (byStatus.get(row.status) ?? 0) + 1)
      console.log(`property | journal statuses ${JSON.stringify([...byStatus])}`)
      assert.strictEqual(byStatus.get("pending") ?? 0, 0)
      assert.strictEqual(byStatus.get("dead_lettered") ?? 0, 0)
      assert.strictEqual(byStatus.get("unroutable") ?? 0, 0)

      // Delivered exactly once to each worker app's queue, consumed and counted (every deliverable id is an owner's).
      const seen = new Map<string, number>()
      for (const worker of workers) {
        const expected = settled.filter((row) => row.status === "routed" && row.worker_app_id === worker.id).length
        const messages = yield* amqp.drainQueue(worker.queue_name, { expected, firstMessageMs: 5_000 })
        for (const m of messages) seen.set(String(m.properties.messageId), (seen.get(String(m.properties.messageId)) ?? 0) + 1)
      }
      for (const row of settled) {
        assert.strictEqual(seen.get(row.event_id) ?? 0, row.status === "routed" ? 1 : 0, `${row.event_id} ${row.status}`)
        assert.strictEqual(row.delivered, row.status === "routed", `${row.event_id} ${row.status}`)
      }
      const health = yield* app.request("/monitoring/health", { auth: false })
      assert.strictEqual(health.status, 200)
    }), 540_000)
})
