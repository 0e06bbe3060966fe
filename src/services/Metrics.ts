import { Effect, Metric } from "effect"

/**
 * The service's metrics, one place. Both `/metrics` (Prometheus text) and
 * `/monitoring/metrics` (JSON) are rendered from these.
 */

const latencyBoundaries = Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 16 })

/** Webhook requests by result: accepted, unauthorized, bad_request, too_large, unavailable, rate_limited. */
export const webhooks = Metric.counter("chatico_webhooks_total", {
  description: "Webhook POSTs by result",
  incremental: true
})

/** Events by outcome: accepted, duplicate, ignored, routed, unroutable, dead_lettered, deferred. */
export const events = Metric.counter("chatico_events_total", {
  description: "Webhook events by outcome",
  incremental: true
})

/** Events delivered to each worker app's queue. */
export const routedByApp = Metric.counter("chatico_routed_events_total", {
  description: "Events published to a worker app's queue, by worker app",
  incremental: true
})

export const acceptLatency = Metric.histogram("chatico_accept_latency_seconds", {
  description: "Time from a webhook POST arriving to its answer",
  boundaries: latencyBoundaries
})

export const deliveryLatency = Metric.histogram("chatico_delivery_latency_seconds", {
  description: "Time from a webhook's arrival to its event's publisher confirm",
  boundaries: latencyBoundaries
})

export const confirmLatency = Metric.histogram("chatico_publish_confirm_latency_seconds", {
  description: "Time from publishing one message to its publisher confirm",
  boundaries: latencyBoundaries
})

export const journalBatchSize = Metric.histogram("chatico_journal_batch_events", {
  description: "Events written per journal batch",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 12 })
})

export const pendingEvents = Metric.gauge("chatico_pending_events", {
  description: "Journaled events not yet delivered"
})

export const mailboxDepth = Metric.gauge("chatico_mailbox_depth", {
  description: "Items waiting in a pipeline stage's mailbox, by stage"
})

export const graphCalls = Metric.counter("chatico_graph_api_calls_total", {
  description: "Graph API calls by result",
  incremental: true
})

export const graphLatency = Metric.histogram("chatico_graph_api_latency_seconds", {
  description: "Graph API call latency",
  boundaries: latencyBoundaries
})

export const ownerCache = Metric.counter("chatico_owner_cache_lookups_total", {
  description: "Media owner lookups by result: hit or miss",
  incremental: true
})

/** Adds `n` to a counter under the given attributes. */
export const count = (metric: Metric.Metric<number, unknown>, attributes: Record<string, string>, n = 1) =>
  Metric.update(Metric.withAttributes(metric, attributes), n)

export const observe = (metric: Metric.Metric<number, unknown>, value: number, attributes?: Record<string, string>) =>
  Metric.update(attributes === undefined ? metric : Metric.withAttributes(metric, attributes), value)

/** Seconds from `startedMs` to `nowMs`; `nowMs` defaults to the wall clock, for callers that stamped `startedMs` with `Date.now()`. */
export const seconds = (startedMs: number, nowMs: number = Date.now()) => Math.max(0, nowMs - startedMs) / 1000

/** Counts outcomes without waiting on anything: for hot paths. */
export const countAll = (metric: Metric.Metric<number, unknown>, tallies: ReadonlyMap<string, number>, key: string) =>
  Effect.forEach(tallies, ([value, n]) => count(metric, { [key]: value }, n), { discard: true })

/** HTTP requests by route template (e.g. `/worker-apps/{id}`) and status. */
export const httpRequests = Metric.counter("http_requests_total", {
  description: "HTTP requests by route and status",
  incremental: true
})

export const httpDuration = Metric.histogram("http_request_duration_seconds", {
  description: "Time from an HTTP request arriving to its answer, by route",
  boundaries: latencyBoundaries
})
