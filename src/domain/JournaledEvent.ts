import type { RequestTrace } from "../services/TraceContext.ts"
import type { WebhookEvent } from "./Webhook.ts"

/** An event as the delivery stages see it: journaled, with its delivery count so far. */
export interface JournaledEvent {
  readonly eventId: string
  readonly object: string
  readonly field: string
  /** The order key: events of one entry id are published in journal order. */
  readonly entryId: string
  /** `entry[].time` exactly as Meta wrote it (a JSON number), or null. */
  readonly entryTimeText: string | null
  readonly mediaId: string | null
  readonly valueRaw: string
  readonly receivedAt: Date
  readonly attempts: number
  /**
   * The webhook's trace when it was traced: the live span for a fresh event, rebuilt from the
   * journal's traceparent after a restart; its tracestate is passed on to the worker.
   */
  readonly trace: RequestTrace | undefined
}

export const toJournaled = (event: WebhookEvent, receivedAt: Date, trace: RequestTrace | undefined): JournaledEvent => ({
  eventId: event.eventId,
  object: event.object,
  field: event.field,
  entryId: event.entryId,
  entryTimeText: event.entryTimeText,
  mediaId: event.mediaId,
  valueRaw: event.valueRaw,
  receivedAt,
  attempts: 0,
  trace
})
