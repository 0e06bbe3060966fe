import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { createHmac } from "node:crypto"
import type { WorkerApp } from "../../src/domain/WorkerApp.ts"
import { AdminClient, answered } from "../support/AdminClient.ts"
import { Amqp, type ReceivedMessage } from "../support/Amqp.ts"
import { APP_SECRET, JournalDb, TestApp, VERIFY_TOKEN } from "../support/TestApp.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"
import {
  bodyAcrossOwners,
  bytesOf,
  commentEvent,
  ENTRY_TIME,
  flatEvent,
  messagingEvent,
  type MessagingKind,
  padTo,
  postWebhook,
  rawChangeEvent,
  rawMembers,
  type SentEvent,
  sign,
  tamper,
  uniqueId,
  webhookText
} from "../support/Webhooks.ts"

// ---------------------------------------------------------------------------------------------
// Fixtures: the service, its own database (read directly) and RabbitMQ with this file's prefix.
// ---------------------------------------------------------------------------------------------


const environment = (name: string, overrides: Parameters<typeof TestApp.layer>[1] = {}) =>
  Layer.mergeAll(JournalDb, Amqp.layer(name)).pipe(Layer.provideMerge(TestApp.layer(name, overrides)))

const UNROUTABLE = "chatico.unroutable"
const HEX64 = /^[0-9a-f]{64}$/
const MESSAGE_KEYS = [
  "event_id",
  "object",
  "field",
  "owner_id",
  "entry_id",
  "entry_time",
  "media_id",
  "received_at",
  "value"
] as const
const startedAt = Math.floor(Date.now() / 1000)


const decodeAccepted = Schema.decodeUnknownSync(Schema.Struct({
  status: Schema.Literal("ok"),
  events: Schema.Number,
  duplicates: Schema.Number
}))
const decodeDetail = Schema.decodeUnknownSync(Schema.Struct({ detail: Schema.String }))
const decodeMessageBody = Schema.decodeUnknownSync(Schema.Struct({
  event_id: Schema.String,
  object: Schema.String,
  field: Schema.String,
  owner_id: Schema.String,
  entry_id: Schema.String,
  entry_time: Schema.NullOr(Schema.Number),
  media_id: Schema.NullOr(Schema.String),
  received_at: Schema.String,
  value: Schema.Unknown
}))
const decodeXDeath = Schema.decodeUnknownSync(Schema.Array(Schema.Struct({
  queue: Schema.String,
  reason: Schema.String,
  count: Schema.Number
})))



const toggle = (workerApp: WorkerApp) =>
  Effect.gen(function*() {
    const client = yield* AdminClient
    const response = yield* answered(client.workerApps.toggle({ params: { id: workerApp.id } }))
    assert.strictEqual(response.status, 200)
    return response.body
  })

/** POSTs a signed body and expects it accepted. */
const accept = (body: string | Uint8Array, options: Parameters<typeof postWebhook>[2] = {}) =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const response = yield* postWebhook(app, body, options)
    assert.strictEqual(response.status, 200, response.text)
    return decodeAccepted(response.json)
  })

interface JournalRow {
  readonly event_id: string
  readonly status: string
  readonly object: string
  readonly field: string
  readonly owner_id: string | null
  readonly worker_app_id: string | null
  readonly value_raw: string
  readonly received_at: Date | string
  readonly delivered_at: Date | string | null
}

/** The journal rows of these events (found by their exact value text), keyed by that text. */
const journalRows = (events: ReadonlyArray<SentEvent>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<JournalRow>`
      SELECT event_id, status, object, field, owner_id, worker_app_id::text AS worker_app_id, value_raw,
             received_at, delivered_at
      FROM webhook_events WHERE value_raw IN ${sql.in(events.map((e) => e.valueRaw))}
    `.pipe(Effect.orDie)
    return new Map(rows.map((row) => [row.value_raw, row]))
  })

/** The journal rows once none of these events is still `pending`. */
const settledRows = (events: ReadonlyArray<SentEvent>) =>
  eventually(
    journalRows(events),
    (rows) => rows.size === events.length && [...rows.values()].every((row) => row.status !== "pending"),
    10
  )

const countDuplicates = (eventIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ readonly n: number }>`
      SELECT count(*)::int AS n FROM webhook_duplicates WHERE event_id IN ${sql.in(eventIds)}
    `.pipe(Effect.orDie)
    return rows[0]?.n ?? -1
  })

const journalSize = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM webhook_events`.pipe(Effect.orDie)
  return rows[0]?.n ?? -1
})

const iso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString()

/** The raw text of the message's `value`, checked to be the only content besides the contract's fields. */
const valueText = (message: ReceivedMessage) => {
  const members = rawMembers(message.text)
  assert.deepStrictEqual([...members.keys()].sort(), [...MESSAGE_KEYS].sort(), message.text)
  return members.get("value")
}

/**
 * Checks one message against the event that was sent and the destination:
 * body fields, `value` byte for byte, and the AMQP properties the contract names.
 */
const checkMessage = (
  message: ReceivedMessage,
  sent: SentEvent,
  destination: { readonly workerApp: WorkerApp | null },
  row?: JournalRow
) => {
  assert.strictEqual(valueText(message), sent.valueRaw)
  assert.isTrue(message.content.includes(Buffer.from(sent.valueRaw, "utf8")), "value bytes")
  const body = decodeMessageBody(JSON.parse(message.text))
  assert.match(body.event_id, HEX64)
  assert.strictEqual(body.object, "instagram")
  assert.strictEqual(body.field, sent.field)
  assert.strictEqual(body.owner_id, sent.ownerId)
  assert.strictEqual(body.entry_id, sent.ownerId)
  assert.strictEqual(body.entry_time, ENTRY_TIME)
  assert.strictEqual(body.media_id, sent.mediaId)
  assert.strictEqual(new Date(body.received_at).toISOString(), body.received_at)
  assert.deepStrictEqual(body.value, JSON.parse(sent.valueRaw))

  const properties = message.properties
  assert.strictEqual(properties.messageId, body.event_id)
  assert.strictEqual(properties.contentType, "application/json")
  assert.strictEqual(properties.deliveryMode, 2)
  assert.strictEqual(properties.type, `instagram.${sent.field}`)
  assert.isNumber(properties.timestamp)
  // Seconds since the epoch, from around this test run (not milliseconds, not zero).
  assert.isAtLeast(properties.timestamp, startedAt - 60)
  assert.isAtMost(properties.timestamp, Math.floor(Date.now() / 1000) + 60)
  const headers = properties.headers ?? {}
  assert.strictEqual(headers["x-owner-id"], sent.ownerId)
  assert.strictEqual(headers["x-attempt"], 1)
  if (destination.workerApp !== null) assert.strictEqual(headers["x-worker-app-id"], destination.workerApp.id)

  if (row !== undefined) {
    assert.strictEqual(row.event_id, body.event_id)
    assert.strictEqual(iso(row.received_at), body.received_at)
  }
  return body
}

/** Matches received messages to the sent events by their exact value text; fails on strays and repeats. */
const bySentValue = (messages: ReadonlyArray<ReceivedMessage>, sent: ReadonlyArray<SentEvent>) => {
  const expected = new Map(sent.map((e) => [e.valueRaw, e]))
  const matched = new Map<string, { readonly message: ReceivedMessage; readonly sent: SentEvent }>()
  for (const message of messages) {
    const raw = valueText(message)
    const event = raw === undefined ? undefined : expected.get(raw)
    assert.isDefined(event, `unexpected message ${message.text}`)
    if (raw === undefined || event === undefined) continue
    assert.isFalse(matched.has(raw), `delivered twice: ${message.text}`)
    matched.set(raw, { message, sent: event })
  }
  return matched
}

// ---------------------------------------------------------------------------------------------

layer(environment("ingest"), { excludeTestServices: true, timeout: "60 seconds" })("webhook ingestion", (it) => {
  it.effect("GET /webhook answers Meta's verification handshake, and only it", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const query = (params: Record<string, string>) => `?${new URLSearchParams(params).toString()}`
      const good = { "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444" }
      for (const path of ["/webhook", "/webhook/"]) {
        const ok = yield* app.request(`${path}${query(good)}`, { auth: false })
        assert.strictEqual(ok.status, 200, path)
        assert.strictEqual(ok.text, "1158201444", path)
        assert.match(ok.headers.get("content-type") ?? "", /^text\/plain/, path)
      }
      const odd = yield* app.request(`/webhook${query({ ...good, "hub.challenge": "a b+c/é&=?" })}`, { auth: false })
      assert.strictEqual(odd.status, 200)
      assert.strictEqual(odd.text, "a b+c/é&=?")

      const refused: ReadonlyArray<Record<string, string>> = [
        { ...good, "hub.verify_token": "wrong-token" },
        { ...good, "hub.verify_token": `${VERIFY_TOKEN}x` },
        { ...good, "hub.verify_token": "" },
        { ...good, "hub.mode": "unsubscribe" },
        { ...good, "hub.mode": "SUBSCRIBE" },
        { "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1" },
        { "hub.mode": "subscribe", "hub.challenge": "1" },
        { "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN },
        {}
      ]
      for (const params of refused) {
        for (const path of ["/webhook", "/webhook/"]) {
          const response = yield* app.request(`${path}${query(params)}`, { auth: false })
          assert.strictEqual(response.status, 403, `${path} ${JSON.stringify(params)}`)
          assert.notInclude(response.text, "1158201444")
        }
      }
    }))

  it.effect("POST /webhook answers 401 unless X-Hub-Signature-256 is the HMAC of the exact bytes", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("signed")
      const event = commentEvent(workerApp.owner_id, { style: "indented" })
      const text = webhookText([[event]])
      const bytes = bytesOf(text)
      const hex = createHmac("sha256", APP_SECRET).update(bytes).digest("hex")
      const reserialized = JSON.stringify(JSON.parse(text))
      assert.notStrictEqual(reserialized, text)

      const refusals: ReadonlyArray<readonly [string, Parameters<typeof postWebhook>[2], Uint8Array]> = [
        ["missing", { signature: null }, bytes],
        ["sha1 header only", {
          signature: null,
          headers: { "x-hub-signature": `sha1=${createHmac("sha1", APP_SECRET).update(bytes).digest("hex")}` }
        }, bytes],
        ["sha1 in the sha256 header", { signature: `sha1=${createHmac("sha1", APP_SECRET).update(bytes).digest("hex")}` }, bytes],
        ["sha512 prefix, right digest", { signature: `sha512=${hex}` }, bytes],
        ["sha512 digest", { signature: `sha512=${createHmac("sha512", APP_SECRET).update(bytes).digest("hex")}` }, bytes],
        ["uppercase hex", { signature: `sha256=${hex.toUpperCase()}` }, bytes],
        ["uppercase prefix", { signature: `SHA256=${hex}` }, bytes],
        ["no prefix", { signature: hex }, bytes],
        ["empty digest", { signature: "sha256=" }, bytes],
        ["truncated digest", { signature: `sha256=${hex.slice(0, 62)}` }, bytes],
        ["digest with extra characters", { signature: `sha256=${hex}00` }, bytes],
        ["base64 digest", { signature: `sha256=${Buffer.from(hex, "hex").toString("base64")}` }, bytes],
        ["wrong key", { signature: sign(bytes, `${APP_SECRET}-other`) }, bytes],
        ["one byte changed after signing", { signature: `sha256=${hex}` }, tamper(bytes, text.indexOf("comment ") + 1)],
        ["signed over a re-serialization", { signature: sign(reserialized) }, bytes]
      ]
      for (const [name, options, body] of refusals) {
        const response = yield* postWebhook(app, body, options)
        assert.strictEqual(response.status, 401, name)
        assert.notInclude(response.text, hex, name)
        assert.notInclude(response.text, APP_SECRET, name)
      }
      const nothing = yield* journalRows([event])
      assert.strictEqual(nothing.size, 0, "a refused body is not journaled")

      const accepted = yield* accept(bytes, { signature: `sha256=${hex}`, path: "/webhook/" })
      assert.deepStrictEqual(accepted, { status: "ok", events: 1, duplicates: 0 })
      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 1 })
      assert.strictEqual(messages.length, 1)
      const rows = yield* settledRows([event])
      checkMessage(messages[0]!, event, { workerApp }, rows.get(event.valueRaw))
    }))

  it.effect("delivers escaped and raw UTF-8 values byte for byte", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("utf8")
      const owner = workerApp.owner_id
      const escapedId = uniqueId()
      const escaped = rawChangeEvent(
        owner,
        "comments",
        `{ "id" : "${escapedId}",\n  "text": "caf\\u00e9 \\ud83d\\ude00 \\"quoted\\" back\\\\slash \\/ tab\\t",` +
          ` "from": {"id": "1", "username": "\\u00e9l\\u00e8ve"}, "media": {"id": "1790000000000001"} }`,
        escapedId,
        "1790000000000001"
      )
      const rawId = uniqueId()
      const raw = rawChangeEvent(
        owner,
        "comments",
        `{"id":"${rawId}","text":"café 😀 日本語 ﬁ — \u00a0nbsp","from":{"id":"2","username":"élève"},"media":{"id":"1790000000000002"}}`,
        rawId,
        "1790000000000002"
      )
      // Escapes stay escapes: a body of pure ASCII, signed as such.
      const escapedBody = webhookText([[escaped]])
      assert.isTrue(/^[\x20-\x7e\n]*$/.test(escapedBody))
      assert.deepStrictEqual(yield* accept(escapedBody), { status: "ok", events: 1, duplicates: 0 })
      // Raw UTF-8: multi-byte characters, signed over the encoded bytes.
      const rawBytes = bytesOf(webhookText([[raw]]))
      assert.isAbove(rawBytes.length, webhookText([[raw]]).length)
      assert.deepStrictEqual(yield* accept(rawBytes, { signature: sign(rawBytes) }), {
        status: "ok",
        events: 1,
        duplicates: 0
      })

      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 2 })
      assert.strictEqual(messages.length, 2)
      const matched = bySentValue(messages, [escaped, raw])
      const rows = yield* settledRows([escaped, raw])
      for (const sent of [escaped, raw]) {
        const found = matched.get(sent.valueRaw)
        assert.isDefined(found)
        if (found === undefined) continue
        const body = checkMessage(found.message, sent, { workerApp }, rows.get(sent.valueRaw))
        assert.strictEqual(rows.get(sent.valueRaw)?.value_raw, sent.valueRaw)
        assert.strictEqual(body.media_id, sent.mediaId)
      }
      // The escaped value arrives escaped; the raw one as the same UTF-8 bytes.
      const escapedMessage = matched.get(escaped.valueRaw)?.message
      assert.include(escapedMessage?.text ?? "", "caf\\u00e9 \\ud83d\\ude00")
      const rawMessage = matched.get(raw.valueRaw)?.message
      assert.isTrue(rawMessage?.content.includes(Buffer.from("café 😀 日本語", "utf8")))
    }))

  it.effect("answers 400 with a JSON detail for signed bodies that are not webhooks, and journals nothing", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const before = yield* journalSize
      const cases: ReadonlyArray<readonly [string, string, RegExp]> = [
        ["not JSON", `{"object": "instagram", "entry": [`, /json/i],
        ["not JSON either", "object=instagram", /json/i],
        ["a JSON array", `[{"object": "instagram", "entry": []}]`, /object|array/i],
        ["a JSON string", `"instagram"`, /object|string/i],
        ["missing entry", `{"object": "instagram"}`, /entry/],
        ["entry an object", `{"object": "instagram", "entry": {"id": "1", "time": 1}}`, /entry/],
        ["entry a string", `{"object": "instagram", "entry": "[]"}`, /entry/],
        ["entry null", `{"object": "instagram", "entry": null}`, /entry/]
      ]
      for (const [name, body, mentions] of cases) {
        const response = yield* postWebhook(app, body)
        assert.strictEqual(response.status, 400, name)
        assert.match(response.headers.get("content-type") ?? "", /json/, name)
        const { detail } = decodeDetail(response.json)
        assert.match(detail, mentions, `${name}: ${detail}`)
      }
      assert.strictEqual(yield* journalSize, before)
    }))

  it.effect("journals other objects as ignored and routes nothing for them", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("page")
      const pageEvent = commentEvent(workerApp.owner_id)
      const accepted = yield* accept(webhookText([[pageEvent]], { object: "page" }))
      assert.strictEqual(accepted.events, 1)
      // An instagram event for the same owner afterwards: the only thing that may reach the queue.
      const instagramEvent = commentEvent(workerApp.owner_id)
      yield* accept(webhookText([[instagramEvent]]))
      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 1, settleMs: 1000 })
      assert.strictEqual(messages.length, 1)
      assert.strictEqual(valueText(messages[0]!), instagramEvent.valueRaw)
      const rows = yield* settledRows([pageEvent, instagramEvent])
      const page = rows.get(pageEvent.valueRaw)
      assert.strictEqual(page?.status, "ignored")
      assert.strictEqual(page?.object, "page")
      assert.isNull(page?.worker_app_id)
      assert.isNull(page?.delivered_at)
      assert.strictEqual(rows.get(instagramEvent.valueRaw)?.status, "routed")
    }))

  it.effect("routes 1000 entries across 50 owners, each event to its owner's queue exactly once", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApps = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        (i) => createWorkerApp(`bulk.${i}`),
        { concurrency: 10 }
      )
      const byOwner = new Map(workerApps.map((w) => [w.owner_id, w]))
      const { events, text } = bodyAcrossOwners(1000, workerApps.map((w) => w.owner_id))
      assert.strictEqual(new Set(events.map((e) => e.key)).size, 1000)

      const accepted = yield* accept(text)
      assert.deepStrictEqual(accepted, { status: "ok", events: 1000, duplicates: 0 })

      const perQueue = yield* Effect.forEach(
        workerApps,
        (w) => Effect.map(amqp.drainQueue(w.queue_name, { expected: 20 }), (messages) => ({ workerApp: w, messages })),
        { concurrency: "unbounded" }
      )
      const rows = yield* settledRows(events)
      assert.strictEqual(rows.size, 1000)

      const messageIds = new Set<string>()
      let total = 0
      for (const { workerApp, messages } of perQueue) {
        assert.strictEqual(messages.length, 20, workerApp.queue_name)
        const sentHere = events.filter((e) => e.ownerId === workerApp.owner_id)
        const matched = bySentValue(messages, sentHere)
        assert.strictEqual(matched.size, 20)
        for (const { message, sent } of matched.values()) {
          const row = rows.get(sent.valueRaw)
          checkMessage(message, sent, { workerApp }, row)
          messageIds.add(String(message.properties.messageId))
          assert.isFalse(message.redelivered)
          total++
        }
      }
      assert.strictEqual(total, 1000)
      assert.strictEqual(messageIds.size, 1000)

      for (const sent of events) {
        const row = rows.get(sent.valueRaw)
        assert.isDefined(row)
        assert.strictEqual(row?.status, "routed")
        assert.strictEqual(row?.owner_id, sent.ownerId)
        assert.strictEqual(row?.worker_app_id, byOwner.get(sent.ownerId)?.id)
        assert.isNotNull(row?.delivered_at)
        assert.isTrue(messageIds.has(row?.event_id ?? ""))
      }
      for (const w of workerApps) assert.strictEqual(yield* amqp.queueMessageCount(w.queue_name), 0)
    }))

  it.effect("delivers a body posted twice in a row once and records the second as duplicates", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("dup.seq")
      const events = [commentEvent(workerApp.owner_id), commentEvent(workerApp.owner_id), messagingEvent(workerApp.owner_id, "message")]
      const text = webhookText([[events[0]!, events[1]!], [events[2]!]])
      assert.deepStrictEqual(yield* accept(text), { status: "ok", events: 3, duplicates: 0 })
      assert.deepStrictEqual(yield* accept(text), { status: "ok", events: 3, duplicates: 3 })
      // Meta's redelivery of a comment may be formatted differently: the comment id identifies it.
      const first = events[0]!
      const reformatted = rawChangeEvent(first.ownerId, first.field, JSON.stringify(JSON.parse(first.valueRaw), null, 4), first.key)
      assert.notStrictEqual(reformatted.valueRaw, first.valueRaw)
      assert.deepStrictEqual(yield* accept(webhookText([[reformatted]], { time: ENTRY_TIME + 60 })), {
        status: "ok",
        events: 1,
        duplicates: 1
      })

      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 3, settleMs: 1000 })
      assert.strictEqual(messages.length, 3)
      assert.strictEqual(bySentValue(messages, events).size, 3)
      const rows = yield* settledRows(events)
      const eventIds = [...rows.values()].map((row) => row.event_id)
      assert.strictEqual(eventIds.length, 3)
      assert.isTrue([...rows.values()].every((row) => row.status === "routed"))
      assert.strictEqual(yield* countDuplicates(eventIds), 4)
      assert.strictEqual((yield* journalRows([reformatted])).size, 0, "the redelivery is not journaled as an event")
    }))

  it.effect("delivers a body posted twice at once once and records one copy as duplicates", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("dup.con")
      const events = Array.from({ length: 4 }, () => commentEvent(workerApp.owner_id))
      const text = webhookText([events])
      const [first, second] = yield* Effect.all([accept(text), accept(text)], { concurrency: 2 })
      assert.deepStrictEqual([first.duplicates, second.duplicates].sort(), [0, 4])
      assert.strictEqual(first.events + second.events, 8)

      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 4, settleMs: 1000 })
      assert.strictEqual(messages.length, 4)
      assert.strictEqual(bySentValue(messages, events).size, 4)
      const rows = yield* settledRows(events)
      assert.strictEqual(yield* countDuplicates([...rows.values()].map((row) => row.event_id)), 4)
    }))

  it.effect("records events without an active worker app as unroutable; a new or re-activated app gets the next one", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const takeUnroutable = (eventId: string | undefined) =>
        amqp.takeMatching(UNROUTABLE, (m) => m.properties.messageId === eventId, { expected: 1 })

      // No worker app for the owner at all.
      const lonelyOwner = uniqueId()
      const orphan = commentEvent(lonelyOwner)
      yield* accept(webhookText([[orphan]]))
      const orphanRow = (yield* settledRows([orphan])).get(orphan.valueRaw)
      assert.strictEqual(orphanRow?.status, "unroutable")
      assert.strictEqual(orphanRow?.owner_id, lonelyOwner)
      assert.isNull(orphanRow?.worker_app_id)
      const orphanMessages = yield* takeUnroutable(orphanRow?.event_id)
      assert.strictEqual(orphanMessages.length, 1)
      checkMessage(orphanMessages[0]!, orphan, { workerApp: null }, orphanRow)

      // An inactive worker app.
      const sleeping = yield* createWorkerApp("inactive")
      const off = yield* toggle(sleeping)
      assert.isFalse(off.is_active)
      const ignored = commentEvent(sleeping.owner_id)
      yield* accept(webhookText([[ignored]]))
      const ignoredRow = (yield* settledRows([ignored])).get(ignored.valueRaw)
      assert.strictEqual(ignoredRow?.status, "unroutable")
      assert.isNull(ignoredRow?.worker_app_id)
      const ignoredMessages = yield* takeUnroutable(ignoredRow?.event_id)
      assert.strictEqual(ignoredMessages.length, 1)
      checkMessage(ignoredMessages[0]!, ignored, { workerApp: null }, ignoredRow)
      assert.strictEqual(yield* amqp.queueMessageCount(sleeping.queue_name), 0)

      // A worker app created now, and the inactive one switched back on, get the next events (and only those).
      const newcomer = yield* createWorkerApp("newcomer", lonelyOwner)
      const on = yield* toggle(sleeping)
      assert.isTrue(on.is_active)
      const forNewcomer = commentEvent(lonelyOwner)
      const forWoken = commentEvent(sleeping.owner_id)
      yield* accept(webhookText([[forNewcomer], [forWoken]]))
      const rows = yield* settledRows([forNewcomer, forWoken])
      for (const [workerApp, sent] of [[newcomer, forNewcomer], [on, forWoken]] as const) {
        const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 1, settleMs: 1000 })
        assert.strictEqual(messages.length, 1, workerApp.queue_name)
        checkMessage(messages[0]!, sent, { workerApp }, rows.get(sent.valueRaw))
        assert.strictEqual(rows.get(sent.valueRaw)?.status, "routed")
        assert.strictEqual(rows.get(sent.valueRaw)?.worker_app_id, workerApp.id)
      }
      // The earlier unroutable events stay unroutable.
      const earlier = yield* journalRows([orphan, ignored])
      assert.deepStrictEqual([...earlier.values()].map((row) => row.status), ["unroutable", "unroutable"])
    }))

  it.effect("a message the worker app rejects lands in its dead-letter queue", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("rejecting")
      const event = commentEvent(workerApp.owner_id)
      yield* accept(webhookText([[event]]))
      const rejected = yield* amqp.rejectMessages(workerApp.queue_name, { expected: 1 })
      assert.strictEqual(rejected.length, 1)
      const eventId = rejected[0]!.properties.messageId
      assert.match(String(eventId), HEX64)

      const deadLetters = yield* amqp.drainQueue(`${workerApp.queue_name}.dlq`, { expected: 1 })
      assert.strictEqual(deadLetters.length, 1)
      const dead = deadLetters[0]!
      assert.strictEqual(dead.properties.messageId, eventId)
      assert.isTrue(dead.content.equals(rejected[0]!.content))
      checkMessage(dead, event, { workerApp })
      const deaths = decodeXDeath(dead.properties.headers?.["x-death"])
      assert.strictEqual(deaths[0]?.queue, workerApp.queue_name)
      assert.strictEqual(deaths[0]?.reason, "rejected")
      assert.strictEqual(yield* amqp.queueMessageCount(workerApp.queue_name), 0)
    }))

  it.effect("maps messaging items to their fields with the whole item as the value, and accepts flat entries", () =>
    Effect.gen(function*() {
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("messaging")
      const owner = workerApp.owner_id
      const kinds: ReadonlyArray<MessagingKind> = ["message", "postback", "read", "reaction", "referral", "optin"]
      const messaging = kinds.map((kind, i) => messagingEvent(owner, kind, i % 2 === 0 ? "indented" : "compact"))
      const flat = flatEvent(owner)
      const live = commentEvent(owner, { field: "live_comments" })
      const all = [...messaging, flat, live]
      const accepted = yield* accept(webhookText([messaging, [flat], [live]]))
      assert.deepStrictEqual(accepted, { status: "ok", events: all.length, duplicates: 0 })

      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: all.length, settleMs: 500 })
      assert.strictEqual(messages.length, all.length)
      const rows = yield* settledRows(all)
      const matched = bySentValue(messages, all)
      assert.strictEqual(matched.size, all.length)
      for (const { message, sent } of matched.values()) {
        checkMessage(message, sent, { workerApp }, rows.get(sent.valueRaw))
        assert.strictEqual(rows.get(sent.valueRaw)?.field, sent.field)
      }
      const message = matched.get(messaging[0]!.valueRaw)?.message
      assert.strictEqual(message?.properties.type, "instagram.messages")
      assert.strictEqual(decodeMessageBody(JSON.parse(message?.text ?? "null")).field, "messages")
      assert.isNull(decodeMessageBody(JSON.parse(message?.text ?? "null")).media_id)
    }))
})

layer(
  environment("rotation", { webhookSecrets: [Redacted.make("old"), Redacted.make("new")] }),
  { excludeTestServices: true, timeout: "60 seconds" }
)("webhook signature key rotation", (it) => {
  it.effect("accepts a body signed with any configured key and nothing else", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("rotation")
      const withOld = commentEvent(workerApp.owner_id)
      const withNew = commentEvent(workerApp.owner_id)
      const withNeither = commentEvent(workerApp.owner_id)
      assert.deepStrictEqual(
        yield* accept(webhookText([[withOld]]), { signature: sign(webhookText([[withOld]]), "old") }),
        { status: "ok", events: 1, duplicates: 0 }
      )
      assert.deepStrictEqual(
        yield* accept(webhookText([[withNew]]), { signature: sign(webhookText([[withNew]]), "new") }),
        { status: "ok", events: 1, duplicates: 0 }
      )
      for (const secret of [APP_SECRET, "old,new", "ol", "newer"]) {
        const body = webhookText([[withNeither]])
        const response = yield* postWebhook(app, body, { signature: sign(body, secret) })
        assert.strictEqual(response.status, 401, secret)
      }
      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 2, settleMs: 1000 })
      assert.strictEqual(bySentValue(messages, [withOld, withNew]).size, 2)
      assert.strictEqual(messages.length, 2)
      assert.strictEqual((yield* journalRows([withNeither])).size, 0)
    }))
})

layer(
  environment("limits", { maxBodyBytes: 2048 }),
  { excludeTestServices: true, timeout: "60 seconds" }
)("webhook body size limit", (it) => {
  it.effect("accepts bodies up to exactly MAX_BODY_BYTES and answers 413 beyond, declared or streamed", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const amqp = yield* Amqp
      const workerApp = yield* createWorkerApp("limits")
      const sized = (size: number) => {
        const event = commentEvent(workerApp.owner_id)
        return { event, bytes: padTo(webhookText([[event]]), size) }
      }
      const under = sized(2047)
      const exact = sized(2048)
      const exactStreamed = sized(2048)
      const over = sized(2049)
      const overStreamed = sized(2049)
      const far = sized(1_500)
      const farOver = padTo(webhookText([[far.event]]), 64 * 1024)
      for (const { bytes } of [under, exact, exactStreamed, over, overStreamed]) {
        assert.oneOf(bytes.length, [2047, 2048, 2049])
      }

      assert.strictEqual((yield* accept(under.bytes)).events, 1)
      assert.strictEqual((yield* accept(exact.bytes)).events, 1)
      assert.strictEqual((yield* accept(exactStreamed.bytes, { chunked: true })).events, 1)
      for (const [name, bytes, chunked] of [
        ["one byte over", over.bytes, false],
        ["one byte over, streamed", overStreamed.bytes, true],
        ["64 KiB", farOver, false]
      ] as const) {
        const response = yield* postWebhook(app, bytes, { chunked })
        assert.strictEqual(response.status, 413, name)
      }

      const accepted = [under.event, exact.event, exactStreamed.event]
      const messages = yield* amqp.drainQueue(workerApp.queue_name, { expected: 3, settleMs: 1000 })
      assert.strictEqual(messages.length, 3)
      assert.strictEqual(bySentValue(messages, accepted).size, 3)
      assert.strictEqual((yield* journalRows([over.event, overStreamed.event, far.event])).size, 0)
    }))
})
