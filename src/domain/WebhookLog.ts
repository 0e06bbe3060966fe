import { Schema } from "effect"

export const EventStatus = Schema.Literals(["pending", "routed", "unroutable", "dead_lettered", "duplicate", "ignored"])
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
  value: Schema.Unknown
}) {}

export const WebhookLogPage = Schema.Struct({
  items: Schema.Array(WebhookLogEntry),
  /** Pass back as `?cursor=` for the next (older) page; null on the last page. */
  next_cursor: Schema.NullOr(Schema.String)
})

export const ReplayFilter = Schema.Struct({
  status: Schema.optionalKey(Schema.Literals(["pending", "routed", "unroutable", "dead_lettered"])),
  owner_id: Schema.optionalKey(Schema.String),
  since: Schema.optionalKey(Schema.String),
  until: Schema.optionalKey(Schema.String)
})
export type ReplayFilter = typeof ReplayFilter.Type

export const ReplayResult = Schema.Struct({
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
  unroutable: QueueCountsJson,
  broker_error: Schema.NullOr(Schema.String)
})

export class EventNotFound extends Schema.TaggedError<EventNotFound>()(
  "EventNotFound",
  { detail: Schema.String },
  { httpApiStatus: 404 }
) {}

export class InvalidFilter extends Schema.TaggedError<InvalidFilter>()(
  "InvalidFilter",
  { detail: Schema.String },
  { httpApiStatus: 422 }
) {}
