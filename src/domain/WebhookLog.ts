import { Schema } from "effect"
import { ValidationIssue } from "./Errors.ts"
import { isWithoutNul } from "./Text.ts"
import { WorkerAppId } from "./WorkerApp.ts"

const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$/

/**
 * Whether a string is an ISO 8601 time Postgres can hold too: a real calendar
 * date in years 1 to 9999 (JavaScript alone accepts "1" or year -271821).
 */
export const isIsoTime = (value: string) => {
  const match = ISO_TIME.exec(value)
  if (match === null) return false
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])]
  if (year < 1 || month < 1 || month > 12 || day < 1) return false
  // Day 0 of the next month is the month's last day (setUTCFullYear, unlike Date.UTC, keeps years 1-99).
  const lastDay = new Date(0)
  lastDay.setUTCFullYear(year, month, 0)
  if (day > lastDay.getUTCDate()) return false
  return !Number.isNaN(Date.parse(value))
}

/** An ISO 8601 time, e.g. `2026-11-27T12:03:00Z`. */
export const Timestamp = Schema.String.check(
  Schema.makeFilter((value: string) => isIsoTime(value) || "must be an ISO 8601 time, e.g. 2026-11-27T12:03:00Z")
)

export const EventStatus = Schema.Literals(["pending", "routed", "unroutable", "dead_lettered", "duplicate", "ignored", "invalid"])
export type EventStatus = typeof EventStatus.Type

export class WebhookLogEntry extends Schema.Class<WebhookLogEntry>("WebhookLogEntry")({
  event_id: Schema.String,
  received_at: Schema.String,
  status: EventStatus,
  object: Schema.String,
  field: Schema.String,
  entry_id: Schema.String,
  media_id: Schema.NullOr(Schema.String),
  owner_id: Schema.NullOr(Schema.String),
  worker_app_id: Schema.NullOr(Schema.String),
  attempts: Schema.Number,
  last_error: Schema.NullOr(Schema.String),
  delivered_at: Schema.NullOr(Schema.String),
  value: Schema.Unknown,
  /** Why the owner came from entry[].id although the Graph API was asked (graph and auto modes). */
  routing_note: Schema.NullOr(Schema.String)
}) {}

/** One event as `GET /monitoring/webhook-logs/{event_id}` shows it: the listing's fields and a few more. */
export class WebhookLogEvent extends Schema.Class<WebhookLogEvent>("WebhookLogEvent")({
  ...WebhookLogEntry.fields,
  /** `entry[].time` as Meta sent it (seconds since the epoch), when it did. */
  entry_time: Schema.NullOr(Schema.Number),
  /** How many times Meta redelivered this event (recorded, not delivered again). */
  duplicates: Schema.Int,
  /** The trace the webhook request belonged to, when it was traced. */
  trace_id: Schema.NullOr(Schema.String)
}) {}

export const WebhookLogPage = Schema.Struct({
  items: Schema.Array(WebhookLogEntry),
  /** Pass back as `?cursor=` for the next (older) page; null on the last page. */
  next_cursor: Schema.NullOr(Schema.String)
})

export const ReplayFilter = Schema.Struct({
  status: Schema.optionalKey(Schema.Literals(["pending", "routed", "unroutable", "dead_lettered"])),
  owner_id: Schema.optionalKey(
    Schema.String.check(Schema.isMaxLength(200, { message: "must be at most 200 characters" }), isWithoutNul)
  ),
  worker_app_id: Schema.optionalKey(WorkerAppId),
  since: Schema.optionalKey(Timestamp),
  until: Schema.optionalKey(Timestamp),
  /** Only count what would be queued; nothing changes. */
  dry_run: Schema.optionalKey(Schema.Boolean)
})
export type ReplayFilter = typeof ReplayFilter.Type

export const ReplayResult = Schema.Struct({
  /** Events queued again (with `dry_run`: events that would be). */
  queued: Schema.Int,
  /** True when the filter matched more than one call replays; call again for the rest. */
  more: Schema.Boolean
})

export const QueueCountsJson = Schema.NullOr(Schema.Struct({ messages: Schema.Number, consumers: Schema.Number }))

export const QueueReport = Schema.Struct({
  worker_app_id: Schema.String,
  name: Schema.String,
  owner_id: Schema.String,
  is_active: Schema.Boolean,
  queue_name: Schema.String,
  queue: QueueCountsJson,
  dead_letter_queue: QueueCountsJson
})

export const QueuesReport = Schema.Struct({
  items: Schema.Array(QueueReport),
  /** Worker apps in all; page with `?limit=` and `?offset=`. */
  total: Schema.Int,
  unroutable: QueueCountsJson,
  broker_error: Schema.NullOr(Schema.String)
})

export class EventNotFound extends Schema.TaggedError<EventNotFound>()(
  "EventNotFound",
  { detail: Schema.String },
  { httpApiStatus: 404 }
) {}

/** A filter that cannot be applied; reported like a validation error, with where the problem is. */
export class InvalidFilter extends Schema.TaggedError<InvalidFilter>()(
  "InvalidFilter",
  { detail: Schema.Array(ValidationIssue) },
  { httpApiStatus: 422 }
) {
  static readonly at = (loc: ReadonlyArray<string>, msg: string) =>
    new InvalidFilter({ detail: [{ loc, msg, type: "value_error" }] })
}
