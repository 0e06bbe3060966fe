import { createHash } from "node:crypto"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { MAX_ENTRIES, type ParsedWebhook, parseWebhook, WebhookBodyError, type WebhookTooManyEvents } from "../../src/domain/Webhook.ts"

const bytes = (body: string | Uint8Array): Uint8Array => typeof body === "string" ? new TextEncoder().encode(body) : body

const ok = (body: string | Uint8Array): ParsedWebhook => {
  const result = parseWebhook(bytes(body))
  if (Result.isFailure(result)) throw new Error(`expected success, got: ${result.failure.detail}`)
  return result.success
}

const error = (body: string | Uint8Array): WebhookBodyError | WebhookTooManyEvents => {
  const result = parseWebhook(bytes(body))
  if (Result.isSuccess(result)) throw new Error("expected a WebhookBodyError, got success")
  return result.failure
}

const detail = (body: string | Uint8Array): string => error(body).detail

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex")

const wrap = (entries: string, object = "instagram"): string => `{"object":${JSON.stringify(object)},"entry":[${entries}]}`
const change = (field: string, value: string): string => `{"field":${JSON.stringify(field)},"value":${value}}`
const entry = (changes: string, id = `"17841400000000000"`): string => `{"id":${id},"time":1764201600,"changes":[${changes}]}`
const single = (field: string, value: string): string => wrap(entry(change(field, value)))

const commentValue =
  `{"from":{"id":"232323","username":"someone"},"media":{"id":"18100000000000000","media_product_type":"FEED"},"id":"17865799348089039","text":"hello"}`

describe("parseWebhook", () => {
  describe("changes", () => {
    it("turns each comments change into one event", () => {
      const parsed = ok(wrap(entry(`${change("comments", commentValue)},${change("comments", `{"id":"2","text":"b"}`)}`)))
      expect(parsed.object).toBe("instagram")
      expect(parsed.events).toHaveLength(2)
      const [first, second] = parsed.events
      expect(first).toMatchObject({
        object: "instagram",
        entryId: "17841400000000000",
        entryTimeText: "1764201600",
        field: "comments",
        mediaId: "18100000000000000",
        valueRaw: commentValue
      })
      expect(first?.value).toEqual(JSON.parse(commentValue))
      expect(first?.eventId).toMatch(/^[0-9a-f]{64}$/)
      expect(second?.valueRaw).toBe(`{"id":"2","text":"b"}`)
      expect(second?.eventId).not.toBe(first?.eventId)
    })

    it("computes the event id from object, entry id, field and the comment id", () => {
      const [event] = ok(single("comments", commentValue)).events
      expect(event?.eventId).toBe(sha256(`instagram\u000017841400000000000\u0000comments\u0000id:17865799348089039`))
    })

    it("hashes the raw value for other fields and for comments without a string id", () => {
      const mention = `{"media_id":"1","comment_id":"2"}`
      expect(ok(single("mentions", mention)).events[0]?.eventId).toBe(
        sha256(`instagram\u000017841400000000000\u0000mentions\u0000raw:${mention}`)
      )
      const numericId = `{"id":5,"text":"x"}`
      expect(ok(single("comments", numericId)).events[0]?.eventId).toBe(
        sha256(`instagram\u000017841400000000000\u0000comments\u0000raw:${numericId}`)
      )
    })

    it("uses the id for live_comments too", () => {
      const a = ok(single("live_comments", `{"id":"9","text":"a"}`)).events[0]
      const b = ok(single("live_comments", `{"text":"a",  "id":"9"}`)).events[0]
      expect(a?.eventId).toBe(b?.eventId)
    })

    it("accepts any JSON as a change value", () => {
      const events = ok(
        wrap(entry([`null`, `1`, `"s"`, `[1,2]`, `true`].map((value, i) => change(`f${i}`, value)).join(",")))
      ).events
      expect(events.map((e) => e.value)).toEqual([null, 1, "s", [1, 2], true])
      expect(events.map((e) => e.valueRaw)).toEqual([`null`, `1`, `"s"`, `[1,2]`, `true`])
      expect(events.every((e) => e.mediaId === null)).toBe(true)
    })

    it("keeps several entries and their order", () => {
      const events = ok(wrap(`${entry(change("a", "1"), `"1"`)},${entry(change("b", "2"), `"2"`)}`)).events
      expect(events.map((e) => [e.entryId, e.field])).toEqual([["1", "a"], ["2", "b"]])
    })

    it("keeps a numeric entry id exactly as written and a missing time as null", () => {
      const parsed = ok(`{"object":"instagram","entry":[{"id":17841400000000000123,"changes":[{"field":"f","value":1}]},{"id":1.50,"time":"x","changes":[{"field":"f","value":1}]}]}`)
      expect(parsed.events.map((e) => e.entryId)).toEqual(["17841400000000000123", "1.50"])
      expect(parsed.events.map((e) => e.entryTimeText)).toEqual([null, null])
    })

    it("accepts objects other than instagram", () => {
      const parsed = ok(single("feed", "{}").replace(`"instagram"`, `"page"`))
      expect(parsed.object).toBe("page")
      expect(parsed.events[0]?.object).toBe("page")
    })

    it("keeps an entry without changes, messaging, standby or field as one ignored event with its raw text", () => {
      for (const raw of [`{"id":"1","time":2}`, `{"id":"1","changes":[],"messaging":[]}`, `{"id":"1","unknown":[{"a":1}]}`]) {
        const events = ok(wrap(raw)).events
        expect(events).toHaveLength(1)
        expect(events[0]).toMatchObject({ field: "entry", disposition: "ignored", valueRaw: raw, entryId: "1" })
      }
      expect(ok(wrap("")).events).toEqual([])
    })
  })

  describe("messaging", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [`{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m","text":"hi"}}`, "messages"],
      [`{"sender":{"id":"1"},"postback":{"title":"t","payload":"p"}}`, "messaging_postbacks"],
      [`{"sender":{"id":"1"},"read":{"mid":"m"}}`, "messaging_seen"],
      [`{"sender":{"id":"1"},"reaction":{"mid":"m","action":"react"}}`, "message_reactions"],
      [`{"sender":{"id":"1"},"referral":{"ref":"r"}}`, "messaging_referral"],
      [`{"sender":{"id":"1"},"optin":{"ref":"r"}}`, "messaging"]
    ]

    it.each(cases)("maps %s to %s, with the whole item as its value", (item, field) => {
      const [event] = ok(wrap(`{"id":"17841400000000000","time":5,"messaging":[${item}]}`)).events
      expect(event?.field).toBe(field)
      expect(event?.valueRaw).toBe(item)
      expect(event?.value).toEqual(JSON.parse(item))
      expect(event?.mediaId).toBeNull()
      expect(event?.entryTimeText).toBe("5")
    })

    it("checks the keys in order: message before read", () => {
      const [event] = ok(wrap(`{"id":"1","messaging":[{"read":{},"message":{"mid":"m"}}]}`)).events
      expect(event?.field).toBe("messages")
    })

    it("takes a null-valued key as present", () => {
      const [event] = ok(wrap(`{"id":"1","messaging":[{"postback":null}]}`)).events
      expect(event?.field).toBe("messaging_postbacks")
    })

    it("reads changes and messaging of one entry", () => {
      const events = ok(wrap(`{"id":"1","messaging":[{"message":{"mid":"m"}}],"changes":[{"field":"comments","value":{"id":"c"}}]}`)).events
      expect(events.map((e) => e.field).sort()).toEqual(["comments", "messages"])
    })
  })

  describe("flat entries", () => {
    it("turns an entry with field and value into one event", () => {
      const value = `{"media_id":"42", "comment_id":"7"}`
      const [event, ...rest] = ok(wrap(`{"id":"9","time":3,"field":"mentions","value":${value}}`)).events
      expect(rest).toEqual([])
      expect(event).toMatchObject({ entryId: "9", entryTimeText: "3", field: "mentions", mediaId: "42", valueRaw: value })
    })

    it("rejects a flat entry without a usable field or value", () => {
      expect(detail(wrap(`{"id":"9","value":{}}`))).toBe("entry[0].field must be a non-empty string")
      expect(detail(wrap(`{"id":"9","field":"","value":{}}`))).toBe("entry[0].field must be a non-empty string")
      expect(detail(wrap(`{"id":"9","field":"mentions"}`))).toBe("entry[0].value is missing")
    })
  })

  describe("valueRaw", () => {
    it("keeps escapes, raw UTF-8, number formatting and whitespace byte for byte", () => {
      const value = `{ "text" : "caf\\u00e9 and café \\"quoted\\" \\\\ end\\\\",\n\t"float": 1.0, "exp": 1e3, "big": 12345678901234567890,\r\n "nested": [ { "a" : [ ] } , -0.5E-2 ] }`
      const body = `{"object":"instagram","entry":[ { "id" : "1" , "changes" : [ { "field" : "comments" , "value" : ${value} } ] } ]}`
      const [event] = ok(body).events
      expect(event?.valueRaw).toBe(value)
      expect(event?.value).toEqual(JSON.parse(value))
      const original = bytes(body)
      const raw = bytes(event?.valueRaw ?? "")
      const at = Buffer.from(original).indexOf(Buffer.from(raw))
      expect(at).toBeGreaterThan(0)
      expect(Buffer.from(original.subarray(at, at + raw.length)).equals(Buffer.from(raw))).toBe(true)
    })

    it("keeps primitive values exactly", () => {
      const values = [`1.0`, `1e3`, `12345678901234567890`, `"\\u00e9"`, `"é"`, `-0`, `false`]
      const events = ok(wrap(entry(values.map((v) => change("f", v)).join(" , ")))).events
      expect(events.map((e) => e.valueRaw)).toEqual(values)
      expect(events.map((e) => e.value)).toEqual([1, 1000, 12345678901234567890, "é", "é", -0, false])
    })

    it("gives different event ids to differently written but equal values", () => {
      const a = ok(single("mentions", `{"n":1.0}`)).events[0]
      const b = ok(single("mentions", `{"n":1}`)).events[0]
      expect(a?.value).toEqual(b?.value)
      expect(a?.eventId).not.toBe(b?.eventId)
    })

    it("skips strings full of brackets, quotes and backslashes", () => {
      const tricky = `"]}[{\\"\\\\\\"}\\\\"`
      const body = `{"x":${tricky},"object":"instagram","entry":[{"id":"1","k":{"a":[${tricky},{"b":${tricky}}]},"changes":[{"z":${tricky},"field":"f","value":[${tricky}]}]}]}`
      const [event] = ok(body).events
      expect(event?.valueRaw).toBe(`[${tricky}]`)
      expect(event?.value).toEqual([JSON.parse(tricky)])
    })

    it("finds keys written with escapes, as JSON.parse does", () => {
      const body = `{"object":"instagram","\\u0065ntry":[{"id":"1","chang\\u0065s":[{"field":"f","v\\u0061lue":{"x":1}}]}]}`
      const [event] = ok(body).events
      expect(event?.valueRaw).toBe(`{"x":1}`)
    })
  })

  describe("against JSON.parse on generated bodies", () => {
    // A small seeded generator: random whitespace, escapes, number spellings and repeated keys.
    const random = (() => {
      let seed = 20261127
      return (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      }
    })()
    const pick = <A>(items: ReadonlyArray<A>): A => {
      const item = items[random(items.length)]
      if (item === undefined) throw new Error("pick from an empty list")
      return item
    }
    const ws = (): string => pick(["", "", " ", "\n  ", "\t", "\r\n"])
    const keys = ["value", "id", "field", "entry", "changes", "messaging", "media_id", "media", "x", "v\\u0061lue", "__proto__"]
    const strings = [`"a"`, `"\\u00e9"`, `"é"`, `"\\""`, `"\\\\"`, `"]}{["`, `"\\\\\\""`, `""`]
    const scalars = [`0`, `-1.50`, `1e3`, `12345678901234567890`, `true`, `false`, `null`, ...strings]
    const value = (depth: number): string => {
      const kind = depth > 3 ? 0 : random(3)
      if (kind === 0) return pick(scalars)
      if (kind === 1) return `[${ws()}${Array.from({ length: random(4) }, () => value(depth + 1)).join(`${ws()},${ws()}`)}${ws()}]`
      const members = Array.from({ length: random(5) }, () => `"${pick(keys)}"${ws()}:${ws()}${value(depth + 1)}`)
      return `{${ws()}${members.join(`${ws()},${ws()}`)}${ws()}}`
    }
    const obj = (members: ReadonlyArray<string>): string => `{${ws()}${members.join(`${ws()},${ws()}`)}${ws()}}`
    const arr = (items: ReadonlyArray<string>): string => `[${ws()}${items.join(`${ws()},${ws()}`)}${ws()}]`
    const decoys = (): Array<string> => Array.from({ length: random(2) }, () => `"${pick(keys)}":${value(1)}`)
    const changeText = (): string =>
      obj([...decoys(), `"field":"${pick(["comments", "mentions", "f"])}"`, `"value":${value(0)}`, ...(random(3) === 0 ? [`"value":${value(0)}`] : [])])
    const entryText = (): string =>
      obj([
        ...decoys(),
        `"id":${pick([`"17841400000000000"`, `17841400000000000123`, `1.0`])}`,
        `"time":1`,
        ...(random(2) === 0 ? [`"changes":${arr(Array.from({ length: random(3) }, changeText))}`] : []),
        ...(random(2) === 0 ? [`"messaging":${arr(Array.from({ length: random(3) }, () => value(1).startsWith("{") ? value(1) : "{}").filter((v) => v.startsWith("{")))}`] : []),
        ...(random(4) === 0 ? [`"changes":${arr([changeText()])}`] : [])
      ])
    const bodyText = (): string =>
      obj([...decoys(), `"object":"instagram"`, `"entry":${arr([entryText()])}`, ...(random(3) === 0 ? [`"entry":${arr(Array.from({ length: 1 + random(3) }, entryText))}`] : [])])

    it("every valueRaw parses to its value and appears in the body", () => {
      let events = 0
      for (let round = 0; round < 500; round++) {
        const body = bodyText()
        const result = parseWebhook(bytes(body))
        if (Result.isFailure(result)) {
          // generated decoys may legitimately make an entry invalid (e.g. a repeated non-string field)
          expect(result.failure.detail).not.toContain("could not be located")
          continue
        }
        for (const event of result.success.events) {
          events++
          expect(body).toContain(event.valueRaw)
          expect(JSON.parse(event.valueRaw)).toEqual(event.value)
        }
      }
      expect(events).toBeGreaterThan(300)
    })
  })

  describe("duplicate keys", () => {
    it("takes the last occurrence at every level, as JSON.parse does", () => {
      const body = `{"object":"instagram","entry":[{"id":"old","changes":[{"field":"f","value":1}]}],` +
        `"entry":[{"id":"a","id":"b","changes":[{"field":"x","value":2}],"changes":[{"field":"comments","value":{"id":"first"},"value":{"id":"last", "v":2}}]}]}`
      const parsed = ok(body)
      expect(parsed.events).toHaveLength(1)
      const [event] = parsed.events
      expect(event?.entryId).toBe("b")
      expect(event?.field).toBe("comments")
      expect(event?.valueRaw).toBe(`{"id":"last", "v":2}`)
      expect(event?.value).toEqual({ id: "last", v: 2 })
    })

    it("agrees with JSON.parse for duplicated numeric ids and flat values", () => {
      const [event] = ok(wrap(`{"id":1,"id":2.0,"field":"f","value":"a","value":"b"}`)).events
      expect(event?.entryId).toBe("2.0")
      expect(event?.value).toBe("b")
      expect(event?.valueRaw).toBe(`"b"`)
    })

    it("takes the last messaging list", () => {
      const events = ok(wrap(`{"id":"1","messaging":[{"message":{}}],"messaging":[{"read":{}},{"reaction":{}}]}`)).events
      expect(events.map((e) => e.field)).toEqual(["messaging_seen", "message_reactions"])
      expect(events.map((e) => e.valueRaw)).toEqual([`{"read":{}}`, `{"reaction":{}}`])
    })
  })

  describe("event ids", () => {
    it("are the same for the same body", () => {
      const body = wrap(`${entry(change("comments", commentValue))},{"id":"2","messaging":[{"message":{"mid":"m"}}]}`)
      expect(ok(body).events.map((e) => e.eventId)).toEqual(ok(body).events.map((e) => e.eventId))
    })

    it("differ when the value differs", () => {
      const a = ok(single("mentions", `{"comment_id":"1"}`)).events[0]
      const b = ok(single("mentions", `{"comment_id":"2"}`)).events[0]
      expect(a?.eventId).not.toBe(b?.eventId)
    })

    it("differ by object, entry id and field", () => {
      const base = ok(single("mentions", "{}")).events[0]?.eventId
      expect(ok(wrap(entry(change("mentions", "{}")), "page")).events[0]?.eventId).not.toBe(base)
      expect(ok(wrap(entry(change("mentions", "{}"), `"2"`))).events[0]?.eventId).not.toBe(base)
      expect(ok(single("story_insights", "{}")).events[0]?.eventId).not.toBe(base)
    })

    it("are the same for a comment redelivered with other bytes", () => {
      const a = ok(single("comments", `{"id":"c1","text":"hi","from":{"id":"1"}}`)).events[0]
      const b = ok(single("comments", `{ "from": {"id": "1", "username": "u"}, "text": "h\\u0069", "id": "c1" }`)).events[0]
      expect(a?.eventId).toBe(b?.eventId)
      const c = ok(single("comments", `{"id":"c2","text":"hi","from":{"id":"1"}}`)).events[0]
      expect(c?.eventId).not.toBe(a?.eventId)
    })
  })

  describe("mediaId", () => {
    it("reads media_id, then media.id, keeping numbers as written", () => {
      const values = [
        `{"media_id":"111","media":{"id":"222"}}`,
        `{"media_id":18100000000000000123}`,
        `{"media":{"id":"333"}}`,
        `{"x":1,"media":{"other":{"id":1},"id":18100000000000000456}}`,
        `{"media_id":null,"media":{"id":"444"}}`,
        `{"media":{"id":null}}`,
        `{"media":"555"}`,
        `{"id":"c"}`,
        `["media_id"]`
      ]
      const events = ok(wrap(entry(values.map((v) => change("comments", v)).join(",")))).events
      expect(events.map((e) => e.mediaId)).toEqual([
        "111",
        "18100000000000000123",
        "333",
        "18100000000000000456",
        "444",
        null,
        null,
        null,
        null
      ])
    })

    it("is null for messaging events even when they name media", () => {
      const [event] = ok(wrap(`{"id":"1","messaging":[{"media_id":"7","message":{}}]}`)).events
      expect(event?.mediaId).toBeNull()
    })
  })

  describe("errors", () => {
    it("are WebhookBodyErrors", () => {
      const failure = error("nope")
      expect(failure).toBeInstanceOf(WebhookBodyError)
      expect(failure._tag).toBe("WebhookBodyError")
    })

    it("reject invalid UTF-8", () => {
      expect(detail(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))).toBe("body is not valid UTF-8")
      expect(detail(bytes(single("comments", `"\u00e9"`)).map((b) => (b === 0xa9 ? 0x29 : b)))).toBe(
        "body is not valid UTF-8"
      )
    })

    it("reject a body that is not JSON, without echoing it", () => {
      for (const body of ["", "secret-token-abc", `{"object":"instagram",`, `{"a":1} x`, "{'a':1}"]) {
        const message = detail(body)
        expect(message).toBe("body is not valid JSON")
      }
    })

    it("reject a top level that is not an object", () => {
      expect(detail("[]")).toBe("body must be a JSON object, not an array")
      expect(detail(`"instagram"`)).toBe("body must be a JSON object, not a string")
      expect(detail("null")).toBe("body must be a JSON object, not null")
      expect(detail("42")).toBe("body must be a JSON object, not a number")
    })

    it("require object to be a string", () => {
      expect(detail(`{"entry":[]}`)).toBe("`object` must be a string")
      expect(detail(`{"object":1,"entry":[]}`)).toBe("`object` must be a string")
    })

    it("require entry to be a list", () => {
      expect(detail(`{"object":"instagram"}`)).toBe("`entry` is missing")
      expect(detail(`{"object":"instagram","entry":{}}`)).toBe("`entry` must be a list")
      expect(detail(`{"object":"instagram","entry":null}`)).toBe("`entry` must be a list")
    })

    it("require each entry to be an object with a string or number id", () => {
      expect(detail(wrap(`{"id":"1"},[]`))).toBe("entry[1] must be an object, not an array")
      expect(detail(wrap(`"s"`))).toBe("entry[0] must be an object, not a string")
      expect(detail(wrap(`{"id":"0"},{"id":"1"},{"id":"2"},{"id":true}`))).toBe(
        "entry[3].id must be a string or a number, not a boolean"
      )
      expect(detail(wrap(`{"id":null}`))).toBe("entry[0].id must be a string or a number, not null")
      expect(detail(wrap(`{"id":{"x":"private"}}`))).toBe("entry[0].id must be a string or a number, not an object")
      expect(detail(wrap(`{"time":1}`))).toBe("entry[0].id is missing; it must be a string or a number")
    })

    it("require changes and messaging to be lists of objects", () => {
      expect(detail(wrap(`{"id":"1","changes":{}}`))).toBe("entry[0].changes must be a list, not an object")
      expect(detail(wrap(`{"id":"1","changes":null}`))).toBe("entry[0].changes must be a list, not null")
      expect(detail(wrap(`{"id":"1","messaging":"x"}`))).toBe("entry[0].messaging must be a list, not a string")
      expect(detail(wrap(`{"id":"1","changes":[{"field":"f","value":1},7]}`))).toBe(
        "entry[0].changes[1] must be an object, not a number"
      )
      expect(detail(wrap(`{"id":"1","messaging":[[]]}`))).toBe("entry[0].messaging[0] must be an object, not an array")
    })

    it("require each change to have a non-empty field and a value", () => {
      expect(detail(wrap(`{"id":"1"},{"id":"2","changes":[{"field":"a","value":1},{"value":1}]}`))).toBe(
        "entry[1].changes[1].field must be a non-empty string"
      )
      expect(detail(wrap(entry(change("", "1"))))).toBe("entry[0].changes[0].field must be a non-empty string")
      expect(detail(wrap(entry(`{"field":7,"value":1}`)))).toBe("entry[0].changes[0].field must be a non-empty string")
      expect(detail(wrap(entry(`{"field":"comments"}`)))).toBe("entry[0].changes[0].value is missing")
    })

    it("never contain request data", () => {
      const secret = "SECRET-\u00e9-123"
      const bodies = [
        `{"object":${JSON.stringify(secret)}}`,
        `{"object":"x","entry":[{"id":{"k":${JSON.stringify(secret)}}}]}`,
        `{"object":"x","entry":[{"id":"1","changes":[{"field":${JSON.stringify(secret)}}]}]}`,
        `{"object":"x","entry":[{"id":"1","changes":[{"field":"","value":${JSON.stringify(secret)}}]}]}`,
        `${JSON.stringify(secret)} trailing`
      ]
      for (const body of bodies) expect(detail(body)).not.toContain("SECRET")
    })
  })

  describe("limits", () => {
    const manyEntries = (n: number): string =>
      wrap(Array.from({ length: n }, (_, i) => entry(change("comments", `{"id":"c${i}","text":"t"}`), `"${i}"`)).join(","))

    it(`accepts ${MAX_ENTRIES} entries`, () => {
      const parsed = ok(bytes(manyEntries(MAX_ENTRIES)))
      expect(parsed.events).toHaveLength(MAX_ENTRIES)
      expect(new Set(parsed.events.map((e) => e.eventId)).size).toBe(MAX_ENTRIES)
      expect(parsed.events[999]?.valueRaw).toBe(`{"id":"c999","text":"t"}`)
    })

    it(`rejects ${MAX_ENTRIES + 1} entries, naming the limit`, () => {
      expect(detail(manyEntries(MAX_ENTRIES + 1))).toBe("`entry` has 1001 items; at most 1000 are accepted")
    })

    const depth = 100_000
    const deepArray = "[".repeat(depth) + "]".repeat(depth)
    const deepObject = `{"a":`.repeat(depth) + "1" + "}".repeat(depth)

    it("copes with 100,000 levels of nesting inside a value", () => {
      for (const deep of [deepArray, deepObject]) {
        const body = `{"object":"instagram","skip":${deep},"entry":[{"id":"1","other":${deep},"changes":[{"field":"comments","x":${deep},"value":${deep}}]}]}`
        const [event] = ok(body).events
        expect(event?.valueRaw).toBe(deep)
        expect(event?.mediaId).toBeNull()
        expect(event?.eventId).toMatch(/^[0-9a-f]{64}$/)
      }
      const messaging = wrap(`{"id":"1","messaging":[{"message":${deepObject}}]}`)
      expect(ok(messaging).events[0]?.valueRaw).toBe(`{"message":${deepObject}}`)
    })

    it("copes with 100,000 levels of nesting at the top level", () => {
      expect(() => parseWebhook(bytes(deepArray))).not.toThrow()
      expect(detail(deepArray)).toBe("body must be a JSON object, not an array")
      expect(detail(deepObject)).toBe("`object` must be a string")
      expect(detail("[".repeat(depth))).toBe("body is not valid JSON")
      expect(detail(`{"a":`.repeat(depth))).toBe("body is not valid JSON")
    })
  })

  describe("__proto__ and constructor keys", () => {
    it("stay plain data and pollute nothing", () => {
      const body = `{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"object":"instagram",` +
        `"entry":[{"__proto__":{"changes":[{"field":"evil","value":1}]},"id":"1","changes":[{"field":"comments","__proto__":{"value":2},` +
        `"value":{"__proto__":{"id":"x","polluted":true},"constructor":"c","text":"t"}}]},{"id":"2","__proto__":{"field":"evil","value":1}}]}`
      const parsed = ok(body)
      // The second entry yields no event through its `__proto__` key: it is kept whole, as ignored.
      expect(parsed.events.map((e) => e.disposition)).toEqual(["deliver", "ignored"])
      const [event] = parsed.events
      expect(event?.field).toBe("comments")
      expect(event?.valueRaw).toBe(`{"__proto__":{"id":"x","polluted":true},"constructor":"c","text":"t"}`)
      // the inherited-looking id under __proto__ is not the comment's id: the raw value identifies it
      expect(event?.eventId).toBe(sha256(`instagram\u00001\u0000comments\u0000raw:${event?.valueRaw}`))
      expect(Object.getPrototypeOf(event?.value)).toBe(Object.prototype)
      const fresh: Record<string, unknown> = {}
      expect(fresh["polluted"]).toBeUndefined()
      expect(Object.prototype).not.toHaveProperty("polluted")
    })

    it("do not stand in for missing keys", () => {
      expect(detail(`{"constructor":"x","entry":[]}`)).toBe("`object` must be a string")
      expect(detail(`{"object":"instagram","entry":[{"constructor":"1"}]}`)).toBe(
        "entry[0].id is missing; it must be a string or a number"
      )
      expect(detail(`{"object":"instagram","entry":[{"id":"1","changes":[{"field":"constructor"}]}]}`)).toBe(
        "entry[0].changes[0].value is missing"
      )
    })
  })

  describe("poison inputs", () => {
    it("keeps entry[].time exactly as written, whatever its size", () => {
      for (const time of ["1e19", "9223372036854775807", "1e400", "1.5", "-0", "1764201600"]) {
        const [event] = ok(`{"object":"instagram","entry":[{"id":"1","time":${time},"changes":[${change("f", "1")}]}]}`).events
        expect(event?.entryTimeText).toBe(time)
        expect(event?.disposition).toBe("deliver")
      }
    })

    it("makes an event invalid, escaped for display, when an id or field holds U+0000 or cannot be published", () => {
      const cases: ReadonlyArray<readonly [string, string]> = [
        [wrap(entry(change("comments", commentValue), `"1\\u00002"`)), "entry[0].id contains U+0000"],
        [wrap(entry(change("com\u0000ments", "1"))), "entry[0].changes[0].field contains U+0000"],
        [wrap(entry(change("comments", `{"id":"c","media":{"id":"m\\u0000"}}`))), "entry[0] media id contains U+0000"],
        [single("comments", "1").replace(`"instagram"`, `"insta\\u0000gram"`), "`object` contains U+0000"],
        [wrap(entry(change("f".repeat(246), "1"))), "entry[0].changes[0].field is 246 bytes; at most 245 can be delivered"],
        [wrap(entry(change("f", "1"), JSON.stringify("7".repeat(70_000)))), "entry[0].id is 70000 bytes; at most 128 can be delivered"],
        [wrap(entry(change("f\ud800", "1"))), "entry[0].changes[0].field contains a lone UTF-16 surrogate"]
      ]
      for (const [body, problem] of cases) {
        const [event] = ok(body).events
        expect(event?.disposition).toBe("invalid")
        expect(event?.problem).toBe(problem)
        for (const text of [event?.object, event?.entryId, event?.field, event?.mediaId ?? ""]) {
          expect(text?.includes("\u0000")).toBe(false)
          expect((text ?? "").length).toBeLessThanOrEqual(201)
        }
      }
      expect(ok(wrap(entry(change("f".repeat(245), "1")))).events[0]?.disposition).toBe("deliver")
    })

    it("keeps the event id of an invalid event from its real text", () => {
      const [a] = ok(wrap(entry(change("f", "1"), `"1\\u00002"`))).events
      const [b] = ok(wrap(entry(change("f", "1"), `"1\\\\u00002"`))).events
      expect(a?.eventId).not.toBe(b?.eventId)
      expect(a?.entryId).toBe("1\\u00002")
    })

    it("makes each standby item an event with field standby", () => {
      const item = `{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1,"message":{"mid":"m","text":"hi"}}`
      const events = ok(wrap(`{"id":"17841400000000000","time":5,"standby":[${item},${item.replace("hi", "ho")}]}`)).events
      expect(events.map((e) => [e.field, e.disposition, e.valueRaw])).toEqual([
        ["standby", "deliver", item],
        ["standby", "deliver", item.replace("hi", "ho")]
      ])
    })

    it("refuses more events than the cap with WebhookTooManyEvents", () => {
      const changes = Array.from({ length: 11 }, (_, i) => change("f", String(i))).join(",")
      expect(ok(wrap(entry(changes))).events).toHaveLength(11)
      const result = parseWebhook(bytes(wrap(entry(changes))), 10)
      if (Result.isSuccess(result)) throw new Error("expected a failure")
      expect(result.failure._tag).toBe("WebhookTooManyEvents")
      expect(result.failure.detail).toBe("the body carries more than 10 events; send at most 10 per request")
    })
  })
})
