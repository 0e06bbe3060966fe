import { Clock, Context, Duration, Effect, Layer } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"
import { Broker } from "../services/Broker.ts"
import { GraphApi, type GraphApiHealth } from "../services/GraphApi.ts"
import { Operations } from "../services/Operations.ts"
import { RedisLink } from "../services/Redis.ts"
import { Journal, JOURNAL_MAILBOX } from "../streams/Journal.ts"
import { Delivery } from "../streams/Delivery.ts"
import { Api, HealthDegraded, HealthReport } from "./Api.ts"

/** Longest the backlog query may take before the check says so instead of holding the probe. */
export const BACKLOG_QUERY_TIMEOUT = "2 seconds"

const makeHealthChecks = Effect.gen(function*() {
    const database = yield* Database
    const broker = yield* Broker
    const journal = yield* Journal
    const delivery = yield* Delivery
    const graphApi = yield* GraphApi
    const redisLink = yield* RedisLink
    const operations = yield* Operations
    const { pendingAgeAlert, graphOutageAlert } = yield* AppConfig
    const pendingAlertSeconds = Duration.toSeconds(pendingAgeAlert)
    // When health checks first saw Meta unreachable (circuit not closed); reset once it answers.
    let graphDownSince: number | undefined

    const graphCheck = (graph: GraphApiHealth, now: number) => {
      if (graph.detail.circuit === "closed") graphDownSince = undefined
      else graphDownSince ??= now
      const downFor = graphDownSince === undefined ? 0 : now - graphDownSince
      const detail = { ...graph.detail, unreachable_seconds: Math.round(downFor / 1000) }
      if (graph.ok && downFor > Duration.toMillis(graphOutageAlert)) {
        return {
          ok: false,
          error: `the Graph API has been unreachable for ${Math.round(downFor / 1000)} s (GRAPH_API_OUTAGE_ALERT is ${
            Duration.format(graphOutageAlert)
          })`,
          detail
        }
      }
      return { ...graph, detail }
    }

    // A passing check carries no `error`: what is still worth a look becomes its `warning`.
    const asWarning = <C extends { readonly ok: boolean; readonly error?: string }>(check: C) => {
      if (!check.ok || check.error === undefined) return check
      const { error, ...rest } = check
      return { ...rest, warning: error }
    }

    const backlogCheck = operations.pendingBacklog.pipe(
      Effect.timeout(BACKLOG_QUERY_TIMEOUT),
      Effect.map(({ pending, oldestSeconds }) => {
        const detail = { pending, oldest_pending_seconds: oldestSeconds === null ? null : Math.round(oldestSeconds) }
        return oldestSeconds !== null && oldestSeconds > pendingAlertSeconds
          ? {
            ok: false,
            error: `a pending event has waited ${Math.round(oldestSeconds)} s (PENDING_AGE_ALERT is ${Duration.format(pendingAgeAlert)})`,
            detail
          }
          : { ok: true, detail }
      }),
      Effect.catch(() => Effect.succeed({ ok: false, error: "the pending events could not be counted", detail: {} }))
    )

    const run = Effect.gen(function*() {
        const [db, amqp, graph] = yield* Effect.all([database.check, broker.status, graphApi.health], { concurrency: 3 })
        const checks = {
          database: {
            ok: db.ok,
            ...(db.latencyMs === undefined ? {} : { latency_ms: db.latencyMs }),
            ...(db.error === undefined ? {} : { error: db.error }),
            detail: { migrated: db.migrated }
          },
          rabbitmq: {
            ok: amqp.connected && !amqp.blocked,
            ...(amqp.error === undefined ? {} : { error: amqp.error }),
            detail: { connected: amqp.connected, blocked: amqp.blocked }
          },
          graph_api: graphCheck(graph, yield* Clock.currentTimeMillis),
          // Optional: never failing the service; `degraded` in its detail (and a warning) while away.
          redis: yield* redisLink.health,
          pipeline: yield* Effect.gen(function*() {
            const journalDepth = yield* journal.depth
            const deliveryDepth = yield* delivery.depth
            // A nearly full journal mailbox means webhooks are about to be refused.
            const ok = journalDepth < JOURNAL_MAILBOX * 0.9
            return {
              ok,
              ...(ok ? {} : { error: "the journal mailbox is nearly full" }),
              detail: {
                journal_mailbox: journalDepth,
                delivery_mailbox: deliveryDepth,
                in_flight: yield* delivery.inFlightCount
              }
            }
          }),
          // Only asked of a migrated database that answers: the database check already says when it does not.
          ...(db.ok && db.migrated ? { backlog: yield* backlogCheck } : {})
        }
        const reported = Object.fromEntries(Object.entries(checks).map(([name, check]) => [name, asWarning(check)]))
        const failing = Object.entries(reported).filter(([, check]) => !check.ok).map(([name]) => name)
        return { checks: reported, failing }
      })
    return { run }
  })

/**
 * Every dependency's check and the names of the failing ones: one instance
 * (one memory of a Graph API outage) for the API's health and the console.
 */
export class HealthChecks extends Context.Service<HealthChecks, Effect.Success<typeof makeHealthChecks>>()(
  "chatico/http/HealthChecks"
) {
  static readonly layer = Layer.effect(HealthChecks, makeHealthChecks)
}

export const HealthHttp = HttpApiBuilder.group(
  Api,
  "health",
  Effect.fn(function*(handlers) {
    const health = yield* HealthChecks
    return handlers.handleAll({
      health: Effect.fn("Health.check")(function*() {
        const { checks, failing } = yield* health.run
        if (failing.length > 0) return yield* new HealthDegraded({ status: "degraded", failing, checks })
        return new HealthReport({ status: "ok", checks })
      })
    })
  })
)
