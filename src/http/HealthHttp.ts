import { Effect } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Database } from "../layers/Sql.ts"
import { Api, HealthDegraded, HealthReport } from "./Api.ts"

export const HealthHttp = HttpApiBuilder.group(
  Api,
  "health",
  Effect.fn(function*(handlers) {
    const database = yield* Database
    return handlers.handleAll({
      health: Effect.fn("Health.check")(function*() {
        const db = yield* database.check
        const checks = {
          database: {
            ok: db.ok,
            ...(db.latencyMs === undefined ? {} : { latency_ms: db.latencyMs }),
            ...(db.error === undefined ? {} : { error: db.error }),
            detail: { migrated: db.migrated }
          }
        }
        const failing = Object.entries(checks).filter(([, check]) => !check.ok).map(([name]) => name)
        if (failing.length > 0) return yield* new HealthDegraded({ status: "degraded", failing, checks })
        return new HealthReport({ status: "ok", checks })
      })
    })
  })
)
