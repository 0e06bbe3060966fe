import { Effect } from "effect"
import { type WorkerApp, WorkerAppConflict, WorkerAppsError } from "../domain/WorkerApp.ts"
import { Broker } from "../services/Broker.ts"
import { Router } from "../streams/Router.ts"
import { HttpApiBuilder } from "effect/http-api"
import { WorkerApps } from "../services/WorkerApps.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Api } from "./Api.ts"
import { audit } from "./Audit.ts"
import { ValidationError } from "./Errors.ts"

export const DEFAULT_PAGE_SIZE = 100
/** How long a create or rename waits for its queue's declare before going ahead without it. */
export const DECLARE_TIMEOUT = "5 seconds"

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

// Inside the write's transaction: a queue the broker refuses (it exists with other arguments)
// is a 409 and no row; a broker that is away or slow only delays the declare to the first publish.
export const declaringWith = (broker: Broker["Service"]) => (queue: string) =>
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

const appFields = (app: WorkerApp) => ({
  worker_app_id: app.id,
  name: app.name,
  owner_id: app.owner_id,
  queue_name: app.queue_name,
  is_active: app.is_active
})

// Each endpoint re-raises the reasons its contract lists; any other reason is a bug (a defect, 500).
export const WorkerAppsHttp = HttpApiBuilder.group(
  Api,
  "workerApps",
  Effect.fn(function*(handlers) {
    const workerApps = yield* WorkerApps
    const broker = yield* Broker
    const router = yield* Router
    const { unroutableQueue } = yield* AppConfig

    // UNROUTABLE_QUEUE may be named outside the reserved prefixes: no worker app may take it either.
    const notUnroutable = (queueName: string | undefined) =>
      queueName !== undefined && queueName.toLowerCase() === unroutableQueue.toLowerCase()
        ? Effect.fail(
          new ValidationError({
            detail: [{ loc: ["body", "queue_name"], msg: "is the queue of unroutable events (UNROUTABLE_QUEUE)", type: "value_error" }]
          })
        )
        : Effect.void

    const applied = appliedWith(broker, router)

    const declare = declaringWith(broker)

    return handlers.handleAll({
      create: ({ payload, request }) =>
        notUnroutable(payload.queue_name).pipe(
          Effect.andThen(workerApps.create(payload, declare)),
          Effect.tap(() => router.refresh),
          Effect.tap((app) => audit("worker_app.created", request, appFields(app))),
          Effect.catchReasons("WorkerAppsError", { WorkerAppConflict: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        ),
      list: ({ query }) =>
        workerApps.list({
          ...(query.is_active === undefined ? {} : { is_active: /^(true|1)$/i.test(query.is_active) }),
          ...(query.owner_id === undefined ? {} : { owner_id: query.owner_id }),
          limit: query.limit ?? DEFAULT_PAGE_SIZE,
          offset: query.offset ?? 0
        }).pipe(Effect.catchReasons("WorkerAppsError", { DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)),
      get: ({ params }) =>
        workerApps.get(params.id).pipe(
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        ),
      update: ({ params, payload, request }) =>
        notUnroutable(payload.queue_name).pipe(
          Effect.andThen(workerApps.update(params.id, payload, declare)),
          Effect.tap(() => router.refresh),
          Effect.tap((app) => audit("worker_app.updated", request, { ...appFields(app), changed: Object.keys(payload) })),
          Effect.catchReasons("WorkerAppsError", {
            WorkerAppNotFound: (e) => Effect.fail(e),
            WorkerAppConflict: (e) => Effect.fail(e),
            DatabaseUnavailable: (e) => Effect.fail(e)
          }, Effect.die)
        ),
      remove: ({ params, request }) =>
        workerApps.remove(params.id).pipe(
          Effect.andThen(router.refresh),
          Effect.tap(() => audit("worker_app.deleted", request, { worker_app_id: params.id })),
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        ),
      toggle: ({ params, request }) =>
        workerApps.toggle(params.id).pipe(
          Effect.flatMap(applied),
          Effect.tap((app) => audit("worker_app.toggled", request, appFields(app))),
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        )
    })
  })
)
