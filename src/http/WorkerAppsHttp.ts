import { Effect } from "effect"
import type { WorkerApp } from "../domain/WorkerApp.ts"
import { Broker } from "../services/Broker.ts"
import { Router } from "../streams/Route.ts"
import { HttpApiBuilder } from "effect/http-api"
import { WorkerApps } from "../services/WorkerApps.ts"
import { Api } from "./Api.ts"

export const DEFAULT_PAGE_SIZE = 100

// After a change: the app's queues exist (when the broker is up; otherwise
// they are declared before the first publish) and this instance routes by
// the new snapshot before the response goes out.
export const appliedWith = (broker: Broker["Service"], router: Router["Service"]) => (app: WorkerApp) =>
  broker.declareWorkerQueue(app.queue_name).pipe(
    Effect.catch((error) =>
      Effect.logWarning("worker app queue not declared yet").pipe(
        Effect.annotateLogs({ queue: app.queue_name, error: error.detail })
      )
    ),
    Effect.andThen(router.refresh),
    Effect.as(app)
  )

// Each endpoint re-raises the reasons its contract lists; any other reason is a bug (a defect, 500).
export const WorkerAppsHttp = HttpApiBuilder.group(
  Api,
  "workerApps",
  Effect.fn(function*(handlers) {
    const workerApps = yield* WorkerApps
    const broker = yield* Broker
    const router = yield* Router

    const applied = appliedWith(broker, router)

    return handlers.handleAll({
      create: ({ payload }) =>
        workerApps.create(payload).pipe(
          Effect.flatMap(applied),
          Effect.catchReasons("WorkerAppsError", { WorkerAppConflict: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        ),
      list: ({ query }) =>
        workerApps.list({
          ...(query.is_active === undefined ? {} : { is_active: query.is_active === "true" }),
          ...(query.owner_id === undefined ? {} : { owner_id: query.owner_id }),
          limit: query.limit ?? DEFAULT_PAGE_SIZE,
          offset: query.offset ?? 0
        }).pipe(Effect.catchReasons("WorkerAppsError", { DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)),
      get: ({ params }) =>
        workerApps.get(params.id).pipe(
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        ),
      update: ({ params, payload }) =>
        workerApps.update(params.id, payload).pipe(
          Effect.flatMap(applied),
          Effect.catchReasons("WorkerAppsError", {
            WorkerAppNotFound: (e) => Effect.fail(e),
            WorkerAppConflict: (e) => Effect.fail(e),
            DatabaseUnavailable: (e) => Effect.fail(e)
          }, Effect.die)
        ),
      remove: ({ params }) =>
        workerApps.remove(params.id).pipe(
          Effect.andThen(router.refresh),
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        ),
      toggle: ({ params }) =>
        workerApps.toggle(params.id).pipe(
          Effect.flatMap(applied),
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        )
    })
  })
)
