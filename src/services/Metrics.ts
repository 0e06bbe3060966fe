import { Effect, Metric } from "effect"

/**
 * The service's metrics, one place. Both `/metrics` (Prometheus text) and
 * `/monitoring/metrics` (JSON) are rendered from these.
 */

const latencyBoundaries = Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 16 })

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

const latencyHistogram = (name: string, description: string) =>
  Metric.histogram(name, { description, boundaries: latencyBoundaries })

/** Webhook requests by result: accepted, unauthorized, bad_request, too_large, busy, unavailable, rate_limited. */
export const webhooks = counter("chatico_webhooks_total", "Webhook POSTs by result")

/** Events by outcome: accepted, duplicate, ignored, routed, unroutable, dead_lettered, deferred. */
export const events = counter("chatico_events_total", "Webhook events by outcome")

/** Events delivered to each worker app's queue. */
export const routedByApp = counter("chatico_routed_events_total", "Events published to a worker app's queue, by worker app")

export const acceptLatency = latencyHistogram("chatico_accept_latency_seconds", "Time from a webhook POST arriving to its answer")

export const deliveryLatency = latencyHistogram("chatico_delivery_latency_seconds", "Time from a webhook's arrival to its event's publisher confirm")

export const confirmLatency = latencyHistogram("chatico_publish_confirm_latency_seconds", "Time from publishing one message to its publisher confirm")

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

export const graphCalls = counter("chatico_graph_api_calls_total", "Graph API calls by result")

export const graphLatency = latencyHistogram("chatico_graph_api_latency_seconds", "Graph API call latency")

export const ownerCache = counter("chatico_owner_cache_lookups_total", "Media owner lookups by result: hit or miss")

/** Adds `n` to a counter under the given attributes. */
export const count = (metric: Metric.Metric<number, unknown>, attributes: Record<string, string>, n = 1) =>
  Metric.update(Metric.withAttributes(metric, attributes), n)

export const observe = (metric: Metric.Metric<number, unknown>, value: number, attributes?: Record<string, string>) =>
  Metric.update(attributes === undefined ? metric : Metric.withAttributes(metric, attributes), value)

/** Seconds from `startedMs` to `nowMs`, both read from the Clock. */
export const seconds = (startedMs: number, nowMs: number) => Math.max(0, nowMs - startedMs) / 1000

/** Counts outcomes without waiting on anything: for hot paths. */
export const countAll = (metric: Metric.Metric<number, unknown>, tallies: ReadonlyMap<string, number>, key: string) =>
  Effect.forEach(tallies, ([value, n]) => count(metric, { [key]: value }, n), { discard: true })

/** HTTP requests by route template (e.g. `/worker-apps/{id}`) and status. */
export const httpRequests = counter("http_requests_total", "HTTP requests by route and status")

export const httpDuration = latencyHistogram("http_request_duration_seconds", "Time from an HTTP request arriving to its answer, by route")
