import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { APP_SECRET, SECRET_KEY, TestApp, VERIFY_TOKEN } from "../support/TestApp.ts"
import { sign } from "../support/Webhooks.ts"
import { eventually } from "../support/WorkerApps.ts"

/** Sends raw bytes to /webhook; answers the status (never throws on a 5xx: the test asserts). */
const post = (baseUrl: string, body: Uint8Array, headers: Record<string, string>) =>
  fetch(`${baseUrl}/webhook`, { method: "POST", body, headers }).then(async (response) => {
    const text = await response.text()
    return { status: response.status, text }
  })

const deep = (levels: number, inner: string) => "[".repeat(levels) + inner + "]".repeat(levels)

// Bodies a hostile or broken client might send: random bytes, JSON-ish text, mangled webhooks.
const hostileBody = fc.oneof(
  fc.uint8Array({ maxLength: 4096 }).map((bytes) => ({ label: "bytes", bytes })),
  fc.string({ maxLength: 2048 }).map((text) => ({ label: "text", bytes: new TextEncoder().encode(text) })),
  fc.json({ maxDepth: 6 }).map((text) => ({ label: "json", bytes: new TextEncoder().encode(text) })),
  fc.record({
    object: fc.oneof(fc.constant("instagram"), fc.string(), fc.integer(), fc.constant(null)),
    entry: fc.oneof(
      fc.array(fc.record({
        id: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.object()),
        changes: fc.oneof(fc.array(fc.record({ field: fc.oneof(fc.string(), fc.integer()), value: fc.jsonValue() })), fc.string()),
        messaging: fc.option(fc.array(fc.dictionary(fc.string(), fc.jsonValue())), { nil: undefined })
      }), { maxLength: 5 }),
      fc.jsonValue()
    )
  }).map((body) => ({ label: "webhook-ish", bytes: new TextEncoder().encode(JSON.stringify(body)) })),
  fc.constantFrom(
    { label: "truncated", bytes: new TextEncoder().encode(`{"object":"instagram","entry":[{"id":"1","changes":[`) },
    { label: "proto", bytes: new TextEncoder().encode(`{"__proto__":{"entry":[]},"constructor":{"prototype":{}},"object":"instagram"}`) },
    { label: "invalid-utf8", bytes: Uint8Array.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]) }
  )
)

const contentType = fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=x")

layer(TestApp.layer("abuse_bodies"), { excludeTestServices: true, timeout: "120 seconds" })("hostile webhook bodies", (it) => {
  it.effect("random bodies and content types, signed or not, get a clear 4xx or 200, never a 5xx", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const seen = new Map<number, number>()
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(hostileBody, fc.boolean(), contentType, async ({ bytes }, signed, type) => {
            const headers: Record<string, string> = type === "" ? {} : { "content-type": type }
            if (signed) headers["x-hub-signature-256"] = sign(bytes)
            const { status, text } = await post(app.baseUrl, bytes, headers)
            seen.set(status, (seen.get(status) ?? 0) + 1)
            if (status >= 500) return false
            if (!signed && status !== 401) return false
            // A refusal says why, in JSON, and never echoes a secret.
            if (status >= 400 && !text.includes("detail")) return false
            return !text.includes(APP_SECRET) && !text.includes(SECRET_KEY) && !text.includes(VERIFY_TOKEN)
          }),
          { numRuns: 300, seed: 20261127 }
        )
      )
      // The property saw both refusals and (some) acceptances.
      assert.isAbove(seen.get(400) ?? 0, 0)
      assert.isAbove(seen.get(401) ?? 0, 0)
      const health = yield* app.request("/monitoring/health", { auth: false })
      assert.strictEqual(health.status, 200)
    }))

  it.effect("extreme but signed bodies: deep nesting, huge numbers and strings, NUL escapes, 10,000 entries", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const encode = (text: string) => new TextEncoder().encode(text)
      const change = (value: string) =>
        `{"object":"instagram","entry":[{"id":"5500000001","time":1,"changes":[{"field":"comments","value":${value}}]}]}`
      const cases: ReadonlyArray<readonly [string, Uint8Array, ReadonlyArray<number>]> = [
        ["100,000 levels at the top", encode(deep(100_000, "1")), [400]],
        ["100,000 levels in a value", encode(change(deep(100_000, "1"))), [200]],
        ["a number beyond numeric", encode(change(`{"id":"huge-n","n":1e1000000}`)), [200]],
        ["a 200-digit integer", encode(change(`{"id":"long-n","n":${"9".repeat(200)}}`)), [200]],
        ["a NUL escape", encode(change(`{"id":"nul","text":"a\\u0000b"}`)), [200]],
        ["a 1 MB string", encode(change(`{"id":"big-s","text":"${"x".repeat(1024 * 1024)}"}`)), [200]],
        ["duplicate keys", encode(change(`{"id":"dup-k","text":"a","text":"b"}`)), [200]],
        [
          "10,000 entries",
          encode(JSON.stringify({ object: "instagram", entry: Array.from({ length: 10_000 }, (_, i) => ({ id: String(i) })) })),
          [400]
        ]
      ]
      for (const [label, bytes, expected] of cases) {
        const { status, text } = yield* Effect.promise(() =>
          post(app.baseUrl, bytes, { "content-type": "application/json", "x-hub-signature-256": sign(bytes) })
        )
        assert.include(expected, status, `${label}: ${status} ${text.slice(0, 200)}`)
      }
      const health = yield* app.request("/monitoring/health", { auth: false })
      assert.strictEqual(health.status, 200)
      // Values Postgres cannot hold as jsonb are still journaled, as text (their outcomes are written
      // back in batches, a moment after delivery).
      const logs = yield* eventually(
        app.request<{ items: ReadonlyArray<{ value: unknown }> }>("/monitoring/webhook-logs?status=unroutable&limit=500"),
        (page) => page.body.items.length >= 5,
        10
      )
      assert.isAtLeast(logs.body.items.length, 5)
      assert.isAtLeast(logs.body.items.filter((item) => item.value === null).length, 2)
    }))
})
