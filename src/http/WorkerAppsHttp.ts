import { Effect } from "effect"
import { type WorkerApp, WorkerAppConflict, WorkerAppsError } from "../domain/WorkerApp.ts"
import { Broker } from "../services/Broker.ts"
import { Router } from "../streams/Router.ts"
import { HttpApiBuilder } from "effect/http-api"
import { WorkerApps } from "../services/WorkerApps.ts"
import { Api } from "./Api.ts"

export const DEFAULT_PAGE_SIZE = 100
/** How long a create or rename waits for its queue's declare before going ahead without it. */
export const DECLARE_TIMEOUT = "5 seconds"

// Each endpoint re-raises the reasons its contract lists; any other reason is a bug (a defect, 500).
export const WorkerAppsHttp = HttpApiBuilder.group(
  Api,
  "workerApps",
  Effect.fn(function*(handlers) {
    const workerApps = yield* WorkerApps
    const broker = yield* Broker
    const router = yield* Router

    // After a change: the app's queues exist (when the broker is up; otherwise
    // they are declared before the first publish) and this instance routes by
    // the new snapshot before the response goes out.
    const applied = (app: WorkerApp) =>
      broker.declareWorkerQueue(app.queue_name).pipe(
        Effect.catch((error) =>
          Effect.logWarning("worker app queue not declared yet").pipe(
            Effect.annotateLogs({ queue: app.queue_name, error: error.detail })
          )
        ),
        Effect.andThen(router.refresh),
        Effect.as(app)
      )

    // Inside the write's transaction: a queue the broker refuses (it exists with other arguments)
    // is a 409 and no row; a broker that is away or slow only delays the declare to the first publish.
    const declare = (queue: string) =>
      broker.declareWorkerQueue(queue).pipe(
        Effect.timeoutOrElse({ duration: DECLARE_TIMEOUT, orElse: () => Effect.logWarning("worker app queue declare timed out") }),
        Effect.catch((error) =>
          error.reason === "refused"
            ? Effect.fail(
              new WorkerAppsError({
                reason: new WorkerAppConflict({
                  field: "queue_name",
                  detail: `RabbitMQ refuses to declare queue ${queue} (or its .dlq): it exists with other arguments or is locked; ` +
                    "delete it or choose another queue_name"
                })
              })
            )
            : Effect.logWarning("worker app queue not declared yet").pipe(Effect.annotateLogs({ queue, error: error.detail }))
        )
      )

    return handlers.handleAll({
      create: ({ payload }) =>
        workerApps.create(payload, declare).pipe(
          Effect.tap(() => router.refresh),
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
        workerApps.update(params.id, payload, declare).pipe(
          Effect.tap(() => router.refresh),
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
