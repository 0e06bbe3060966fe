import { createHash } from "node:crypto"
import { Result, Schema } from "effect"

/** The most entries one webhook body may carry (Meta batches at most 1000). */
export const MAX_ENTRIES = 1000

/** One change or messaging item of a webhook body. */
export interface WebhookEvent {
  /** sha256 hex of object, entry id, field and the value's identity: Meta's redeliveries get the same id. */
  readonly eventId: string
  readonly object: string
  /** `entry[].id`; a numeric id keeps the digits exactly as written in the body. */
  readonly entryId: string
  readonly entryTime: number | null
  readonly field: string
  readonly mediaId: string | null
  readonly value: unknown
  /** The value's JSON text exactly as it appears in the body. */
  readonly valueRaw: string
}

export interface ParsedWebhook {
  readonly object: string
  readonly events: ReadonlyArray<WebhookEvent>
}

/** The body is not a Meta webhook. `detail` names the fault by path only, never echoing request data. */
export class WebhookBodyError extends Schema.TaggedError<WebhookBodyError>()(
  "WebhookBodyError",
  { detail: Schema.String },
  { httpApiStatus: 400 }
) {}

type JsonObject = { readonly [key: string]: unknown }

const isObject = (u: unknown): u is JsonObject => typeof u === "object" && u !== null && !Array.isArray(u)

// JSON.parse makes every key an own property; reading through hasOwn keeps `constructor` & co. out.
const own = (o: JsonObject, key: string): unknown => (Object.hasOwn(o, key) ? o[key] : undefined)

const kindOf = (u: unknown): string =>
  u === null
    ? "null"
    : Array.isArray(u)
    ? "an array"
    : typeof u === "object"
    ? "an object"
    : typeof u === "string"
    ? "a string"
    : typeof u === "number"
    ? "a number"
    : "a boolean"

const MESSAGING_FIELDS: ReadonlyArray<readonly [key: string, field: string]> = [
  ["message", "messages"],
  ["postback", "messaging_postbacks"],
  ["read", "messaging_seen"],
  ["reaction", "message_reactions"],
  ["referral", "messaging_referral"]
]

const messagingField = (item: JsonObject): string => {
  for (const [key, field] of MESSAGING_FIELDS) {
    if (Object.hasOwn(item, key)) return field
  }
  return "messaging"
}

// ---------------------------------------------------------------------------------------------
// Span scanner. It runs only over text JSON.parse has already accepted, so it can trust the
// grammar; it is iterative (a depth counter, no recursion) so any nesting depth is safe.
// ---------------------------------------------------------------------------------------------

/** Half-open `[start, end)` range of one JSON value in the body text. */
interface Span {
  readonly start: number
  readonly end: number
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d

const isWhitespace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

const skipWhitespace = (s: string, i: number): number => {
  while (i < s.length && isWhitespace(s.charCodeAt(i))) i++
  return i
}

/** `i` is at the opening quote; returns the index after the closing quote. */
const skipString = (s: string, i: number): number => {
  let from = i + 1
  for (;;) {
    const quote = s.indexOf("\"", from)
    if (quote === -1) return s.length
    let k = quote - 1
    while (s.charCodeAt(k) === BACKSLASH) k--
    // An even run of backslashes escapes only itself, so this quote ends the string.
    if ((quote - 1 - k) % 2 === 0) return quote + 1
    from = quote + 1
  }
}

/** `i` is at the first character of a value; returns the index after its last character. */
const skipValue = (s: string, i: number): number => {
  const first = s.charCodeAt(i)
  if (first === QUOTE) return skipString(s, i)
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    // number, true, false or null: runs until a delimiter
    while (i < s.length) {
      const c = s.charCodeAt(i)
      if (c === COMMA || c === CLOSE_BRACE || c === CLOSE_BRACKET || isWhitespace(c)) break
      i++
    }
    return i
  }
  let depth = 0
  while (i < s.length) {
    const c = s.charCodeAt(i)
    if (c === QUOTE) {
      i = skipString(s, i)
      continue
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
      if (depth === 0) return i + 1
    }
    i++
  }
  return s.length
}

/**
 * Walks the members of the object starting at `start`, handing each decoded key and the start of
 * its value to `visit`, which returns the end of that value. Returns the end of the object.
 */
const scanObject = (s: string, start: number, visit: (key: string, valueStart: number) => number): number => {
  if (s.charCodeAt(start) !== OPEN_BRACE) return skipValue(s, start)
  let i = skipWhitespace(s, start + 1)
  if (s.charCodeAt(i) === CLOSE_BRACE) return i + 1
  while (i < s.length) {
    const keyEnd = skipString(s, i)
    const rawKey = s.slice(i + 1, keyEnd - 1)
    // Escaped keys (`"\u0065ntry"`) are rare; JSON.parse decodes them as it did when building the value.
    const key = rawKey.includes("\\") ? decodeKey(s.slice(i, keyEnd)) : rawKey
    i = skipWhitespace(s, keyEnd)
    i = skipWhitespace(s, i + 1) // past ':'
    i = skipWhitespace(s, visit(key, i))
    if (s.charCodeAt(i) !== COMMA) return i + 1
    i = skipWhitespace(s, i + 1)
  }
  return s.length
}

const decodeKey = (quoted: string): string => {
  const key: unknown = JSON.parse(quoted)
  return typeof key === "string" ? key : ""
}

/** Walks the elements of the array starting at `start`, as `scanObject` walks members. */
const scanArray = (s: string, start: number, visit: (elementStart: number) => number): number => {
  if (s.charCodeAt(start) !== OPEN_BRACKET) return skipValue(s, start)
  let i = skipWhitespace(s, start + 1)
  if (s.charCodeAt(i) === CLOSE_BRACKET) return i + 1
  while (i < s.length) {
    i = skipWhitespace(s, visit(i))
    if (s.charCodeAt(i) !== COMMA) return i + 1
    i = skipWhitespace(s, i + 1)
  }
  return s.length
}

/** The span of member `key` of the object starting at `start`; a repeated key keeps its last span, as JSON.parse does. */
const memberSpan = (s: string, start: number, key: string): Span | undefined => {
  let span: Span | undefined
  scanObject(s, start, (k, at) => {
    const end = skipValue(s, at)
    if (k === key) span = { start: at, end }
    return end
  })
  return span
}

/** Where the parts of one entry lie in the body. Repeated keys keep their last occurrence, as JSON.parse does. */
interface EntrySpans {
  id: Span | undefined
  value: Span | undefined
  /** The span of each change's `value`. */
  changes: Array<Span | undefined> | undefined
  messaging: Array<Span> | undefined
}

const scanEntry = (s: string, start: number, spans: EntrySpans): number =>
  scanObject(s, start, (key, at) => {
    if (key === "changes") {
      const changes: Array<Span | undefined> = []
      spans.changes = changes
      return scanArray(s, at, (changeStart) => {
        let value: Span | undefined
        const end = scanObject(s, changeStart, (k, valueStart) => {
          const valueEnd = skipValue(s, valueStart)
          if (k === "value") value = { start: valueStart, end: valueEnd }
          return valueEnd
        })
        changes.push(value)
        return end
      })
    }
    if (key === "messaging") {
      const messaging: Array<Span> = []
      spans.messaging = messaging
      return scanArray(s, at, (itemStart) => {
        const end = skipValue(s, itemStart)
        messaging.push({ start: itemStart, end })
        return end
      })
    }
    const end = skipValue(s, at)
    if (key === "id") spans.id = { start: at, end }
    else if (key === "value") spans.value = { start: at, end }
    return end
  })

/** One pass over the body locating every entry's parts. */
const scanEntries = (s: string): Array<EntrySpans> => {
  let entries: Array<EntrySpans> = []
  scanObject(s, skipWhitespace(s, 0), (key, at) => {
    if (key !== "entry") return skipValue(s, at)
    const found: Array<EntrySpans> = []
    entries = found
    return scanArray(s, at, (entryStart) => {
      const spans: EntrySpans = { id: undefined, value: undefined, changes: undefined, messaging: undefined }
      found.push(spans)
      return scanEntry(s, entryStart, spans)
    })
  })
  return entries
}

// ---------------------------------------------------------------------------------------------

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** A fault found while walking the entries; caught in `parseWebhook` and turned into a `WebhookBodyError`. */
class Invalid {
  readonly detail: string
  constructor(detail: string) {
    this.detail = detail
  }
}

const fail = (detail: string): Result.Result<never, WebhookBodyError> =>
  Result.fail(new WebhookBodyError({ detail }))

const eventId = (object: string, entryId: string, field: string, value: unknown, valueRaw: string): string => {
  const commentId = (field === "comments" || field === "live_comments") && isObject(value) ? own(value, "id") : undefined
  const identity = typeof commentId === "string" ? `id:${commentId}` : `raw:${valueRaw}`
  return createHash("sha256").update(`${object}\u0000${entryId}\u0000${field}\u0000${identity}`).digest("hex")
}

const spanText = (s: string, span: Span | undefined): string | undefined =>
  span === undefined ? undefined : s.slice(span.start, span.end)

/** `value.media_id`, else `value.media.id`; a number keeps its digits as written (ids exceed 2^53). */
const mediaIdOf = (s: string, value: unknown, span: Span): string | null => {
  if (!isObject(value)) return null
  const mediaId = own(value, "media_id")
  if (typeof mediaId === "string") return mediaId
  if (typeof mediaId === "number") return spanText(s, memberSpan(s, span.start, "media_id")) ?? String(mediaId)
  const media = own(value, "media")
  if (!isObject(media)) return null
  const id = own(media, "id")
  if (typeof id === "string") return id
  if (typeof id === "number") {
    const mediaSpan = memberSpan(s, span.start, "media")
    return spanText(s, mediaSpan === undefined ? undefined : memberSpan(s, mediaSpan.start, "id")) ?? String(id)
  }
  return null
}

const requireList = (value: unknown, path: string): ReadonlyArray<unknown> => {
  if (!Array.isArray(value)) throw new Invalid(`${path} must be a list, not ${kindOf(value)}`)
  return value
}

// The scanner and JSON.parse read the same text, so these only fail if the scanner has a bug.
const located = <A>(found: ReadonlyArray<A> | undefined, length: number, path: string): ReadonlyArray<A> => {
  if (found === undefined || found.length !== length) throw new Invalid(`${path} could not be located in the body`)
  return found
}

const spanAt = (spans: ReadonlyArray<Span | undefined>, index: number, path: string): Span => {
  const span = spans[index]
  if (span === undefined) throw new Invalid(`${path} could not be located in the body`)
  return span
}

const parseEntries = (text: string, body: JsonObject, object: string): Array<WebhookEvent> => {
  const entryValue = own(body, "entry")
  if (entryValue === undefined) throw new Invalid("`entry` is missing")
  if (!Array.isArray(entryValue)) throw new Invalid("`entry` must be a list")
  const entries: ReadonlyArray<unknown> = entryValue
  if (entries.length > MAX_ENTRIES) {
    throw new Invalid(`\`entry\` has ${entries.length} items; at most ${MAX_ENTRIES} are accepted`)
  }
  const entrySpans = located(scanEntries(text), entries.length, "`entry`")
  const events: Array<WebhookEvent> = []

  const push = (entryId: string, entryTime: number | null, field: string, value: unknown, span: Span, isChange: boolean) => {
    const valueRaw = text.slice(span.start, span.end)
    events.push({
      eventId: eventId(object, entryId, field, value, valueRaw),
      object,
      entryId,
      entryTime,
      field,
      mediaId: isChange ? mediaIdOf(text, value, span) : null,
      value,
      valueRaw
    })
  }

  for (let i = 0; i < entries.length; i++) {
    const entry: unknown = entries[i]
    const path = `entry[${i}]`
    if (!isObject(entry)) throw new Invalid(`${path} must be an object, not ${kindOf(entry)}`)
    const spans = entrySpans[i]
    if (spans === undefined) throw new Invalid(`${path} could not be located in the body`)

    const id = own(entry, "id")
    let entryId: string
    if (typeof id === "string") entryId = id
    else if (typeof id === "number") entryId = spanText(text, spans.id) ?? String(id)
    else if (id === undefined) throw new Invalid(`${path}.id is missing; it must be a string or a number`)
    else throw new Invalid(`${path}.id must be a string or a number, not ${kindOf(id)}`)
    const time = own(entry, "time")
    const entryTime = typeof time === "number" ? time : null

    const changes = own(entry, "changes")
    if (changes !== undefined) {
      const list = requireList(changes, `${path}.changes`)
      const valueSpans = located(spans.changes, list.length, `${path}.changes`)
      for (let j = 0; j < list.length; j++) {
        const change: unknown = list[j]
        const changePath = `${path}.changes[${j}]`
        if (!isObject(change)) throw new Invalid(`${changePath} must be an object, not ${kindOf(change)}`)
        const field = own(change, "field")
        if (typeof field !== "string" || field.length === 0) {
          throw new Invalid(`${changePath}.field must be a non-empty string`)
        }
        if (!Object.hasOwn(change, "value")) throw new Invalid(`${changePath}.value is missing`)
        push(entryId, entryTime, field, change["value"], spanAt(valueSpans, j, `${changePath}.value`), true)
      }
    }

    const messaging = own(entry, "messaging")
    if (messaging !== undefined) {
      const list = requireList(messaging, `${path}.messaging`)
      const itemSpans = located(spans.messaging, list.length, `${path}.messaging`)
      for (let j = 0; j < list.length; j++) {
        const item: unknown = list[j]
        const itemPath = `${path}.messaging[${j}]`
        if (!isObject(item)) throw new Invalid(`${itemPath} must be an object, not ${kindOf(item)}`)
        push(entryId, entryTime, messagingField(item), item, spanAt(itemSpans, j, itemPath), false)
      }
    }

    // A "flat" entry carries one change directly: { id, time, field, value }.
    if (Object.hasOwn(entry, "field") || Object.hasOwn(entry, "value")) {
      const field = own(entry, "field")
      if (typeof field !== "string" || field.length === 0) throw new Invalid(`${path}.field must be a non-empty string`)
      if (!Object.hasOwn(entry, "value")) throw new Invalid(`${path}.value is missing`)
      push(entryId, entryTime, field, entry["value"], spanAt([spans.value], 0, `${path}.value`), true)
    }
  }
  return events
}

/**
 * Parses a webhook body (already signature-checked) into its events. Pure and synchronous; every
 * fault, whatever the input, is a `WebhookBodyError` in the result.
 */
export const parseWebhook = (body: Uint8Array): Result.Result<ParsedWebhook, WebhookBodyError> => {
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    return fail("body is not valid UTF-8")
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return fail("body is not valid JSON")
  }
  if (!isObject(parsed)) return fail(`body must be a JSON object, not ${kindOf(parsed)}`)
  const object = own(parsed, "object")
  if (typeof object !== "string") return fail("`object` must be a string")
  try {
    return Result.succeed({ object, events: parseEntries(text, parsed, object) })
  } catch (error) {
    if (error instanceof Invalid) return fail(error.detail)
    // Unreachable for any input JSON.parse accepts; kept so a bug answers 400 instead of crashing the handler.
    return fail("body could not be read as a webhook")
  }
}
