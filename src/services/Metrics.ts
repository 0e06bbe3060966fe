import { type Context, Effect, Metric } from "effect"

/**
 * The service's metrics, one place. Both `/metrics` (Prometheus text) and
 * `/monitoring/metrics` (JSON) are rendered from these.
 */

const latencyBoundaries = Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 16 })

/**
 * A metric and its series, each series one metric object made on first use of its attribute set.
 * A `Metric.withAttributes` made per update made effect build the series key (sorted, as JSON)
 * on every update, a measured share of the CPU per webhook (README, "Performance"). Attribute
 * values are bounded (results, routes, statuses, worker apps), as effect's registry needs them to be.
 */
export class Family {
  readonly plain: Metric.Metric<number, unknown>
  private readonly make: (attributes: Record<string, string>) => Metric.Metric<number, unknown>
  private readonly series = new Map<string, Metric.Metric<number, unknown>>()

  constructor(make: (attributes: Record<string, string> | undefined) => Metric.Metric<number, unknown>) {
    this.make = make
    this.plain = make(undefined)
  }

  of(attributes: Record<string, string>): Metric.Metric<number, unknown> {
    let key = ""
    for (const name in attributes) key += `${name}\u0000${attributes[name]}\u0001`
    let metric = this.series.get(key)
    if (metric === undefined) {
      metric = this.make(attributes)
      this.series.set(key, metric)
    }
    return metric
  }
}

const counter = (name: string, description: string) =>
  new Family((attributes) => Metric.counter(name, { description, incremental: true, attributes }))

const latencyHistogram = (name: string, description: string) =>
  new Family((attributes) => Metric.histogram(name, { description, boundaries: latencyBoundaries, attributes }))

/** Webhook requests by result: accepted, unauthorized, bad_request, too_large, busy, unavailable, rate_limited. */
export const webhooks = counter("chatico_webhooks_total", "Webhook POSTs by result")

/** Events by outcome: accepted, duplicate, ignored, routed, unroutable, dead_lettered, deferred. */
export const events = counter("chatico_events_total", "Webhook events by outcome")

/** Events delivered to each worker app's queue. */
export const routedByApp = counter("chatico_routed_events_total", "Events published to a worker app's queue, by worker app")

export const acceptLatency = latencyHistogram("chatico_accept_latency_seconds", "Time from a webhook POST arriving to its answer")

export const deliveryLatency = latencyHistogram("chatico_delivery_latency_seconds", "Time from a webhook's arrival to its event's publisher confirm")

export const confirmLatency = latencyHistogram("chatico_publish_confirm_latency_seconds", "Time from publishing one message to its publisher confirm")

export const journalBatchSize = new Family((attributes) =>
  Metric.histogram("chatico_journal_batch_events", {
    description: "Events written per journal batch",
    boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 12 }),
    attributes
  })
)

export const pendingEvents = new Family((attributes) =>
  Metric.gauge("chatico_pending_events", { description: "Journaled events not yet delivered", attributes })
)

export const mailboxDepth = new Family((attributes) =>
  Metric.gauge("chatico_mailbox_depth", { description: "Items waiting in a pipeline stage's mailbox, by stage", attributes })
)

export const graphCalls = counter("chatico_graph_api_calls_total", "Graph API calls by result")

export const graphLatency = latencyHistogram("chatico_graph_api_latency_seconds", "Graph API call latency")

export const ownerCache = counter("chatico_owner_cache_lookups_total", "Media owner lookups by result: hit or miss")

/** Adds `n` to a counter under the given attributes. */
export const count = (family: Family, attributes: Record<string, string>, n = 1) => Metric.update(family.of(attributes), n)

export const observe = (family: Family, value: number, attributes?: Record<string, string>) =>
  Metric.update(attributes === undefined ? family.plain : family.of(attributes), value)

/** One update of a series, to be made with others in `updateAll`. */
export interface Update {
  readonly metric: Metric.Metric<number, unknown>
  readonly value: number
}

/** `n` added to a counter's series (for `updateAll`). */
export const added = (family: Family, attributes: Record<string, string>, n = 1): Update => ({ metric: family.of(attributes), value: n })

/** A value observed by a histogram or set on a gauge (for `updateAll`). */
export const observed = (family: Family, value: number, attributes?: Record<string, string>): Update => ({
  metric: attributes === undefined ? family.plain : family.of(attributes),
  value
})

/** Several updates as one step of the fiber, for the hot paths (each `Metric.update` is two and an `Effect.all` more). */
export const updateAll = (updates: ReadonlyArray<Update>): Effect.Effect<void> =>
  Effect.contextWith((context: Context.Context<never>) =>
    Effect.sync(() => {
      for (const update of updates) update.metric.updateUnsafe(update.value, context)
    })
  )

/** Seconds from `startedMs` to `nowMs`, both read from the Clock. */
export const seconds = (startedMs: number, nowMs: number) => Math.max(0, nowMs - startedMs) / 1000

/** HTTP requests by route template (e.g. `/worker-apps/{id}`) and status. */
export const httpRequests = counter("http_requests_total", "HTTP requests by route and status")

export const httpDuration = latencyHistogram("http_request_duration_seconds", "Time from an HTTP request arriving to its answer, by route")
