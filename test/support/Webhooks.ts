import { Effect } from "effect"
import { createHmac } from "node:crypto"
import { APP_SECRET } from "./TestApp.ts"

/** `X-Hub-Signature-256` of exactly these bytes (a string is signed as its UTF-8 bytes). */
export const sign = (body: string | Uint8Array, secret: string = APP_SECRET): string =>
  `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`

/** The bytes a body is sent as: the same bytes `sign` signs. */
export const bytesOf = (body: string | Uint8Array): Uint8Array =>
  typeof body === "string" ? new TextEncoder().encode(body) : body

// Ids look like Instagram's (17–19 digits) and never repeat within a process, so event ids never collide.
let counter = 0n
const idBase = 17_900_000_000_000_000n + BigInt(Math.floor(Math.random() * 1_000_000)) * 1_000_000n

/** A fresh Instagram-like numeric id, as a string. */
export const uniqueId = (): string => {
  counter += 1n
  return String(idBase + counter)
}

/**
 * One event as the test sends it, with what the worker app must receive:
 * `valueRaw` is the exact text of the value in the body.
 */
export interface SentEvent {
  readonly ownerId: string
  readonly field: string
  readonly valueRaw: string
  readonly mediaId: string | null
  /** The comment id (changes) or message id (messaging), unique per event. */
  readonly key: string
  /** Where it sits in the entry. */
  readonly kind: "change" | "messaging" | "flat"
}

export interface CommentOptions {
  readonly field?: "comments" | "live_comments"
  readonly commentId?: string
  readonly mediaId?: string
  readonly text?: string
  /** How the value is written: compact, or indented over several lines (both must arrive unchanged). */
  readonly style?: "compact" | "indented"
}

const render = (value: unknown, style: "compact" | "indented" = "compact") =>
  style === "compact" ? JSON.stringify(value) : JSON.stringify(value, null, 2)

/** A comment change (`comments` or `live_comments`) on one of the owner's media. */
export const commentEvent = (ownerId: string, options: CommentOptions = {}): SentEvent => {
  const commentId = options.commentId ?? uniqueId()
  const mediaId = options.mediaId ?? uniqueId()
  const value = {
    from: { id: uniqueId(), username: "commenter" },
    media: { id: mediaId, media_product_type: "FEED" },
    id: commentId,
    text: options.text ?? `comment ${commentId}`
  }
  return {
    ownerId,
    field: options.field ?? "comments",
    valueRaw: render(value, options.style),
    mediaId,
    key: commentId,
    kind: "change"
  }
}

/** A change whose value is given as raw JSON text (escapes, spacing and all). */
export const rawChangeEvent = (
  ownerId: string,
  field: string,
  valueRaw: string,
  key: string,
  mediaId: string | null = null
): SentEvent => ({ ownerId, field, valueRaw, mediaId, key, kind: "change" })

/** A flat entry's change (`{ id, time, field, value }` without `changes`): a mention of the owner in a comment. */
export const flatEvent = (ownerId: string, field = "mentions"): SentEvent => {
  const key = uniqueId()
  const mediaId = uniqueId()
  return { ownerId, field, valueRaw: render({ media_id: mediaId, comment_id: key }), mediaId, key, kind: "flat" }
}

export type MessagingKind = "message" | "postback" | "read" | "reaction" | "referral" | "optin"

/** The field the contract maps each messaging item key to. */
export const MESSAGING_FIELD: Record<MessagingKind, string> = {
  message: "messages",
  postback: "messaging_postbacks",
  read: "messaging_seen",
  reaction: "message_reactions",
  referral: "messaging_referral",
  optin: "messaging"
}

/** A messaging item sent to the owner's account; its value is the whole item. */
export const messagingEvent = (ownerId: string, kind: MessagingKind, style: "compact" | "indented" = "compact"): SentEvent => {
  const mid = `aWdfZAG1faXRlbToxOklH${uniqueId()}`
  const payloads: Record<MessagingKind, unknown> = {
    message: { mid, text: "hello \u00e9 \ud83d\udc4b" },
    postback: { mid, title: "Get started", payload: "GET_STARTED" },
    read: { mid },
    reaction: { mid, action: "react", reaction: "love", emoji: "\u2764" },
    referral: { ref: mid, source: "ADS", type: "OPEN_THREAD" },
    optin: { ref: mid }
  }
  const item = {
    sender: { id: uniqueId() },
    recipient: { id: ownerId },
    timestamp: 1764201600123,
    [kind]: payloads[kind]
  }
  return { ownerId, field: MESSAGING_FIELD[kind], valueRaw: render(item, style), mediaId: null, key: mid, kind: "messaging" }
}

/** An entry's raw text: every event must have the entry's owner as `ownerId`. */
export const entryText = (events: ReadonlyArray<SentEvent>, time: number): string => {
  const ownerId = events[0]?.ownerId ?? uniqueId()
  const changes = events.filter((e) => e.kind === "change")
  const messaging = events.filter((e) => e.kind === "messaging")
  const flat = events.filter((e) => e.kind === "flat")
  if (events.some((e) => e.ownerId !== ownerId)) throw new Error("an entry's events must share one owner")
  if (flat.length > 1) throw new Error("an entry holds at most one flat change")
  const parts = [`"id": ${JSON.stringify(ownerId)}`, `"time": ${time}`]
  if (changes.length > 0) {
    parts.push(`"changes": [${changes.map((c) => `{"field": ${JSON.stringify(c.field)}, "value": ${c.valueRaw}}`).join(", ")}]`)
  }
  if (messaging.length > 0) parts.push(`"messaging": [${messaging.map((m) => m.valueRaw).join(",\n ")}]`)
  for (const f of flat) parts.push(`"field": ${JSON.stringify(f.field)}`, `"value": ${f.valueRaw}`)
  return `{${parts.join(", ")}}`
}

export const ENTRY_TIME = 1764201600

/** A webhook body; each inner list is one entry. */
export const webhookText = (
  entries: ReadonlyArray<ReadonlyArray<SentEvent>>,
  options: { readonly object?: string; readonly time?: number } = {}
): string =>
  `{"object": ${JSON.stringify(options.object ?? "instagram")}, "entry": [\n${
    entries.map((events) => entryText(events, options.time ?? ENTRY_TIME)).join(",\n")
  }\n]}`

/** `n` entries of one comment each, spread round-robin over `owners`. */
export const bodyAcrossOwners = (n: number, owners: ReadonlyArray<string>) => {
  const events = Array.from({ length: n }, (_, i) =>
    commentEvent(owners[i % owners.length]!, { style: i % 3 === 0 ? "indented" : "compact" }))
  return { events, text: webhookText(events.map((e) => [e])) }
}

/** Pads a body with spaces before its final `}` to exactly `size` bytes (still the same JSON). */
export const padTo = (text: string, size: number): Uint8Array => {
  const bytes = bytesOf(text)
  if (bytes.length > size) throw new Error(`body is already ${bytes.length} bytes`)
  const close = text.lastIndexOf("}")
  return bytesOf(`${text.slice(0, close)}${" ".repeat(size - bytes.length)}${text.slice(close)}`)
}

/** A copy of a body with the byte at `at` changed. */
export const tamper = (body: Uint8Array, at: number): Uint8Array => {
  const copy = Uint8Array.from(body)
  copy[at] = copy[at] === 0x61 ? 0x62 : 0x61
  return copy
}

export interface WebhookResponse {
  readonly status: number
  readonly text: string
  /** The parsed body, or `undefined` when it is not JSON. */
  readonly json: unknown
  readonly headers: Headers
}

export interface PostOptions {
  /** The `X-Hub-Signature-256` header: default the right one, `null` to leave it out. */
  readonly signature?: string | null
  readonly headers?: Record<string, string>
  readonly path?: string
  /** Send the body as a chunked stream, without `content-length`. */
  readonly chunked?: boolean
}

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** POSTs exactly these bytes to the service's webhook (signed over the same bytes unless told otherwise). */
export const postWebhook = (
  app: { readonly baseUrl: string },
  body: string | Uint8Array,
  options: PostOptions = {}
): Effect.Effect<WebhookResponse> =>
  Effect.promise(async () => {
    const bytes = bytesOf(body)
    const headers = new Headers({ "content-type": "application/json", ...options.headers })
    const signature = options.signature === undefined ? sign(bytes) : options.signature
    if (signature !== null) headers.set("x-hub-signature-256", signature)
    const payload = options.chunked === true
      ? new ReadableStream<Uint8Array>({
        start(controller) {
          // Several chunks, so the service sees a streamed body.
          for (let i = 0; i < bytes.length; i += 512) controller.enqueue(bytes.slice(i, i + 512))
          controller.close()
        }
      })
      : bytes
    const response = await fetch(`${app.baseUrl}${options.path ?? "/webhook"}`, {
      method: "POST",
      headers,
      body: payload,
      ...(options.chunked === true ? { duplex: "half" } : {})
    })
    const text = await response.text()
    return { status: response.status, text, json: parseJson(text), headers: response.headers }
  })

// ---------------------------------------------------------------------------------------------
// Reading raw member text back out of a JSON document (for byte-for-byte comparisons).
// ---------------------------------------------------------------------------------------------

const isSpace = (c: string | undefined) => c === " " || c === "\n" || c === "\r" || c === "\t"

const skipSpace = (s: string, i: number) => {
  while (isSpace(s[i])) i++
  return i
}

const endOfString = (s: string, i: number) => {
  let k = i + 1
  while (k < s.length) {
    if (s[k] === "\\") k += 2
    else if (s[k] === "\"") return k + 1
    else k++
  }
  throw new Error("unterminated string")
}

const endOfValue = (s: string, i: number) => {
  const first = s[i]
  if (first === "\"") return endOfString(s, i)
  if (first === "{" || first === "[") {
    let depth = 0
    let k = i
    while (k < s.length) {
      const c = s[k]
      if (c === "\"") {
        k = endOfString(s, k)
        continue
      }
      if (c === "{" || c === "[") depth++
      else if (c === "}" || c === "]") {
        depth--
        if (depth === 0) return k + 1
      }
      k++
    }
    throw new Error("unterminated value")
  }
  let k = i
  while (k < s.length && s[k] !== "," && s[k] !== "}" && s[k] !== "]" && !isSpace(s[k])) k++
  return k
}

/** The raw text of each top-level member of a JSON object, in order; a repeated key throws. */
export const rawMembers = (text: string): Map<string, string> => {
  const members = new Map<string, string>()
  let i = skipSpace(text, 0)
  if (text[i] !== "{") throw new Error("not a JSON object")
  i = skipSpace(text, i + 1)
  while (text[i] !== "}") {
    const keyEnd = endOfString(text, i)
    const key: unknown = JSON.parse(text.slice(i, keyEnd))
    if (typeof key !== "string") throw new Error("bad key")
    i = skipSpace(text, keyEnd)
    if (text[i] !== ":") throw new Error("expected ':'")
    i = skipSpace(text, i + 1)
    const end = endOfValue(text, i)
    if (members.has(key)) throw new Error(`repeated key ${key}`)
    members.set(key, text.slice(i, end))
    i = skipSpace(text, end)
    if (text[i] === ",") i = skipSpace(text, i + 1)
    else if (text[i] !== "}") throw new Error("expected ',' or '}'")
  }
  return members
}
