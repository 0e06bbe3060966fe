import { Effect } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Database } from "../layers/Sql.ts"
import { Broker } from "../services/Broker.ts"
import { GraphApi } from "../services/GraphApi.ts"
import { Journal, JOURNAL_MAILBOX } from "../streams/Journal.ts"
import { Delivery } from "../streams/Publish.ts"
import { Api, HealthDegraded, HealthReport } from "./Api.ts"

/** Every dependency's check, and the names of the failing ones (the API's health and the console's overview). */
export const healthChecks = Effect.gen(function*() {
  const database = yield* Database
  const broker = yield* Broker
  const journal = yield* Journal
  const delivery = yield* Delivery
  const graphApi = yield* GraphApi
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
    graph_api: graph,
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
    })
  }
  const failing = Object.entries(checks).filter(([, check]) => !check.ok).map(([name]) => name)
  return { checks, failing }
})

export const HealthHttp = HttpApiBuilder.group(
  Api,
  "health",
  Effect.fn(function*(handlers) {
    const context = yield* Effect.context<Database | Broker | Journal | Delivery | GraphApi>()
    return handlers.handleAll({
      health: Effect.fn("Health.check")(function*() {
        const { checks, failing } = yield* Effect.provideContext(healthChecks, context)
        if (failing.length > 0) return yield* new HealthDegraded({ status: "degraded", failing, checks })
        return new HealthReport({ status: "ok", checks })
      })
    })
  })
)
