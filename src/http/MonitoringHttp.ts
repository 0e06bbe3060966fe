import { Effect, Metric } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { PrometheusMetrics } from "effect/observability"
import * as Metrics from "../services/Metrics.ts"
import { DEFAULT_LOG_PAGE, DEFAULT_QUEUES_PAGE, Operations, reasons } from "../services/Operations.ts"
import { refreshProcessMetrics } from "../services/ProcessMetrics.ts"
import { Journal } from "../streams/Journal.ts"
import { Delivery } from "../streams/Delivery.ts"
import { Api } from "./Api.ts"
import { audit } from "./Audit.ts"

// JSON has no Infinity (a histogram's last bound) nor bigint: write them as Prometheus does.
const jsonSafe = (value: unknown): unknown => {
  if (typeof value === "bigint") return Number(value)
  if (typeof value === "number") return Number.isFinite(value) ? value : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN"
  if (Array.isArray(value)) return value.map(jsonSafe)
  if (typeof value === "object" && value !== null) return jsonSafeRecord(value)
  return value
}
const jsonSafeRecord = (value: object): Record<string, unknown> =>
  Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, jsonSafe(inner)]))

export const MonitoringHttp = HttpApiBuilder.group(
  Api,
  "monitoring",
  Effect.fn(function*(handlers) {
    const operations = yield* Operations
    const journal = yield* Journal
    const delivery = yield* Delivery

    // Gauges that are read, not counted: refreshed when metrics are asked for.
    const refreshGauges = Effect.gen(function*() {
      yield* refreshProcessMetrics
      yield* Metrics.observe(Metrics.mailboxDepth, yield* journal.depth, { stage: "journal" })
      yield* Metrics.observe(Metrics.mailboxDepth, yield* delivery.depth, { stage: "delivery" })
      const pending = yield* operations.pendingCount.pipe(Effect.option)
      if (pending._tag === "Some") yield* Metrics.observe(Metrics.pendingEvents, pending.value)
    })

    const metricsJson = Effect.gen(function*() {
      yield* refreshGauges
      const snapshot = yield* Metric.snapshot
      const out: Record<string, Array<Record<string, unknown>>> = {}
      for (const metric of snapshot) {
        const entry = { attributes: metric.attributes ?? {}, ...jsonSafeRecord(metric.state) }
        ;(out[metric.id] ??= []).push(entry)
      }
      return out
    })

    return handlers.handleAll({
      metricsJson: () => metricsJson,
      metricsPrometheus: () => Effect.andThen(refreshGauges, PrometheusMetrics.format()),
      webhookLogs: ({ query }) =>
        operations.webhookLogs({ ...query, limit: query.limit ?? DEFAULT_LOG_PAGE }).pipe(
          reasons("InvalidFilter", "DatabaseUnavailable")
        ),
      webhookLog: ({ params }) =>
        operations.webhookLog(params.event_id).pipe(
          reasons("EventNotFound", "DatabaseUnavailable")
        ),
      queues: ({ query }) =>
        operations.queues({ limit: query.limit ?? DEFAULT_QUEUES_PAGE, offset: query.offset ?? 0 }).pipe(
          reasons("DatabaseUnavailable")
        ),
      replayOne: ({ params, request }) =>
        operations.replayOne(params.event_id).pipe(
          reasons("EventNotFound", "DatabaseUnavailable"),
          Effect.tap((result) => audit("replay.requested", request, { event_id: params.event_id, ...result }))
        ),
      replay: ({ payload, request }) =>
        operations.replay(payload).pipe(
          reasons("InvalidFilter", "DatabaseUnavailable"),
          Effect.tap((result) => audit("replay.requested", request, { filter: payload, ...result }))
        )
    })
  })
)
