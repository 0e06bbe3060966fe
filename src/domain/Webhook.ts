import { createHash } from "node:crypto"
import { Result, Schema } from "effect"
import { type EntrySpans, memberSpan, scanEntries, type Span } from "./JsonSpans.ts"

/** The most entries one webhook body may carry (Meta batches at most 1000). */
export const MAX_ENTRIES = 1000
/** Events one body may carry by default; beyond it the body is refused with 413 (`MAX_EVENTS_PER_BODY`). */
export const MAX_EVENTS_PER_BODY = 5_000
/** AMQP's `type` is a short string (255 bytes) and reads `instagram.<field>`: a longer field could never be published. */
export const MAX_FIELD_BYTES = 255 - "instagram.".length
/** Longest `entry[].id` or media id (Meta's are about 20 digits); it goes into AMQP headers and index keys. */
export const MAX_ID_BYTES = 128
/** Characters of an invalid event's id or field kept for the webhook log (its raw text is kept whole). */
const SHOWN_CHARACTERS = 200

/**
 * What the journal does with an event: `deliver` it, keep it as `ignored` (an entry that yields no
 * event), or keep it as `invalid` (signed, but it can never be delivered as sent; `problem` says why).
 */
export type Disposition = "deliver" | "ignored" | "invalid"

/** One change, messaging or standby item of a webhook body. */
export interface WebhookEvent {
  /** sha256 hex of object, entry id, field and the value's identity: Meta's redeliveries get the same id. */
  readonly eventId: string
  readonly object: string
  /** `entry[].id`; a numeric id keeps the digits exactly as written in the body. */
  readonly entryId: string
  /** `entry[].time` exactly as written when it is a number (1e19 stays 1e19), else null. */
  readonly entryTimeText: string | null
  readonly field: string
  readonly mediaId: string | null
  readonly value: unknown
  /** The value's JSON text exactly as it appears in the body. */
  readonly valueRaw: string
  readonly disposition: Disposition
  /** Why an `invalid` event cannot be delivered; null otherwise. */
  readonly problem: string | null
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

/** The body carries more events than one request may (413). */
export class WebhookTooManyEvents extends Schema.TaggedError<WebhookTooManyEvents>()(
  "WebhookTooManyEvents",
  { detail: Schema.String },
  { httpApiStatus: 413 }
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

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** A fault found while walking the entries; caught in `parseWebhook` and turned into its error. */
class Invalid {
  readonly detail: string
  readonly tooMany: boolean
  constructor(detail: string, tooMany = false) {
    this.detail = detail
    this.tooMany = tooMany
  }
}

const fail = (detail: string): Result.Result<never, WebhookBodyError> =>
  Result.fail(new WebhookBodyError({ detail }))

const eventId = (object: string, entryId: string, field: string, value: unknown, valueRaw: string): string => {
  const commentId = (field === "comments" || field === "live_comments") && isObject(value) ? own(value, "id") : undefined
  const identity = typeof commentId === "string" ? `id:${commentId}` : `raw:${valueRaw}`
  return createHash("sha256").update(`${object}\u0000${entryId}\u0000${field}\u0000${identity}`).digest("hex")
}

/** Why Postgres or AMQP could never hold this text as given, or undefined when they can. */
const textProblem = (what: string, text: string, maxBytes: number | undefined): string | undefined => {
  if (text.includes("\u0000")) return `${what} contains U+0000`
  if (!text.isWellFormed()) return `${what} contains a lone UTF-16 surrogate`
  if (maxBytes !== undefined && text.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(text, "utf8")
    if (bytes > maxBytes) return `${what} is ${bytes} bytes; at most ${maxBytes} can be delivered`
  }
  return undefined
}

/** A form of `text` Postgres can store and an operator can read: escaped as in JSON, cut short. */
const shown = (text: string): string => {
  const escaped = JSON.stringify(text).slice(1, -1)
  return escaped.length > SHOWN_CHARACTERS ? `${escaped.slice(0, SHOWN_CHARACTERS)}…` : escaped
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

/** What every event of one entry shares. */
interface EntryContext {
  readonly path: string
  readonly entryId: string
  readonly entryTimeText: string | null
  /** Why the entry's id (or the body's object) can never be delivered. */
  readonly problem: string | undefined
}

const parseEntries = (text: string, body: JsonObject, object: string, maxEvents: number): Array<WebhookEvent> => {
  const entryValue = own(body, "entry")
  if (entryValue === undefined) throw new Invalid("`entry` is missing")
  if (!Array.isArray(entryValue)) throw new Invalid("`entry` must be a list")
  const entries: ReadonlyArray<unknown> = entryValue
  if (entries.length > MAX_ENTRIES) {
    throw new Invalid(`\`entry\` has ${entries.length} items; at most ${MAX_ENTRIES} are accepted`)
  }
  const entrySpans = located(scanEntries(text), entries.length, "`entry`")
  const events: Array<WebhookEvent> = []
  const objectProblem = textProblem("`object`", object, undefined)

  const push = (
    entry: EntryContext,
    field: string,
    value: unknown,
    span: Span,
    isChange: boolean,
    fieldPath: string,
    ignored = false
  ) => {
    if (events.length >= maxEvents) {
      throw new Invalid(`the body carries more than ${maxEvents} events; send at most ${maxEvents} per request`, true)
    }
    const valueRaw = text.slice(span.start, span.end)
    const mediaId = isChange ? mediaIdOf(text, value, span) : null
    const problem = entry.problem ?? textProblem(fieldPath, field, MAX_FIELD_BYTES) ??
      (mediaId === null ? undefined : textProblem(`${entry.path} media id`, mediaId, MAX_ID_BYTES))
    const id = eventId(object, entry.entryId, field, value, valueRaw)
    events.push(
      problem === undefined
        ? {
          eventId: id,
          object,
          entryId: entry.entryId,
          entryTimeText: entry.entryTimeText,
          field,
          mediaId,
          value,
          valueRaw,
          disposition: ignored ? "ignored" : "deliver",
          problem: null
        }
        : {
          eventId: id,
          object: shown(object),
          entryId: shown(entry.entryId),
          entryTimeText: entry.entryTimeText,
          field: shown(field),
          mediaId: mediaId === null ? null : shown(mediaId),
          value,
          valueRaw,
          disposition: "invalid",
          problem
        }
    )
  }

  for (let i = 0; i < entries.length; i++) {
    const entry: unknown = entries[i]
    const path = `entry[${i}]`
    if (!isObject(entry)) throw new Invalid(`${path} must be an object, not ${kindOf(entry)}`)
    const spans: EntrySpans | undefined = entrySpans[i]
    if (spans === undefined) throw new Invalid(`${path} could not be located in the body`)

    const id = own(entry, "id")
    let entryId: string
    if (typeof id === "string") entryId = id
    else if (typeof id === "number") entryId = spanText(text, spans.id) ?? String(id)
    else if (id === undefined) throw new Invalid(`${path}.id is missing; it must be a string or a number`)
    else throw new Invalid(`${path}.id must be a string or a number, not ${kindOf(id)}`)
    const time = own(entry, "time")
    const context: EntryContext = {
      path,
      entryId,
      entryTimeText: typeof time === "number" ? spanText(text, spans.time) ?? null : null,
      problem: objectProblem ?? textProblem(`${path}.id`, entryId, MAX_ID_BYTES)
    }
    const before = events.length

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
        push(context, field, change["value"], spanAt(valueSpans, j, `${changePath}.value`), true, `${changePath}.field`)
      }
    }

    // Messaging items, and standby ones (Meta's handover protocol: messages another app controls).
    for (const [key, standby] of [["messaging", false], ["standby", true]] as const) {
      const items = own(entry, key)
      if (items === undefined) continue
      const list = requireList(items, `${path}.${key}`)
      const itemSpans = located(standby ? spans.standby : spans.messaging, list.length, `${path}.${key}`)
      for (let j = 0; j < list.length; j++) {
        const item: unknown = list[j]
        const itemPath = `${path}.${key}[${j}]`
        if (!isObject(item)) throw new Invalid(`${itemPath} must be an object, not ${kindOf(item)}`)
        push(context, standby ? "standby" : messagingField(item), item, spanAt(itemSpans, j, itemPath), false, itemPath)
      }
    }

    // A "flat" entry carries one change directly: { id, time, field, value }.
    if (Object.hasOwn(entry, "field") || Object.hasOwn(entry, "value")) {
      const field = own(entry, "field")
      if (typeof field !== "string" || field.length === 0) throw new Invalid(`${path}.field must be a non-empty string`)
      if (!Object.hasOwn(entry, "value")) throw new Invalid(`${path}.value is missing`)
      push(context, field, entry["value"], spanAt([spans.value], 0, `${path}.value`), true, `${path}.field`)
    }

    // Nothing lost without trace: an entry in a shape not known here is kept whole, as `ignored`.
    if (events.length === before) push(context, "entry", entry, spans.whole, false, path, true)
  }
  return events
}

/**
 * Parses a webhook body (already signature-checked) into its events. Pure and synchronous; every
 * fault, whatever the input, is a `WebhookBodyError` (400) or `WebhookTooManyEvents` (413) in the result.
 */
export const parseWebhook = (
  body: Uint8Array,
  maxEvents: number = MAX_EVENTS_PER_BODY
): Result.Result<ParsedWebhook, WebhookBodyError | WebhookTooManyEvents> => {
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
    return Result.succeed({ object, events: parseEntries(text, parsed, object, maxEvents) })
  } catch (error) {
    if (error instanceof Invalid) {
      return error.tooMany ? Result.fail(new WebhookTooManyEvents({ detail: error.detail })) : fail(error.detail)
    }
    // Unreachable for any input JSON.parse accepts; kept so a bug answers 400 instead of crashing the handler.
    return fail("body could not be read as a webhook")
  }
}
