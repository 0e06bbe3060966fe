import { Effect } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { WorkerApps } from "../services/WorkerApps.ts"
import { Api } from "./Api.ts"

export const DEFAULT_PAGE_SIZE = 100

// Each endpoint re-raises the reasons its contract lists; any other reason is a bug (a defect, 500).
export const WorkerAppsHttp = HttpApiBuilder.group(
  Api,
  "workerApps",
  Effect.fn(function*(handlers) {
    const workerApps = yield* WorkerApps
    return handlers.handleAll({
      create: ({ payload }) =>
        workerApps.create(payload).pipe(
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
          Effect.catchReasons("WorkerAppsError", {
            WorkerAppNotFound: (e) => Effect.fail(e),
            WorkerAppConflict: (e) => Effect.fail(e),
            DatabaseUnavailable: (e) => Effect.fail(e)
          }, Effect.die)
        ),
      remove: ({ params }) =>
        workerApps.remove(params.id).pipe(
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        ),
      toggle: ({ params }) =>
        workerApps.toggle(params.id).pipe(
          Effect.catchReasons("WorkerAppsError", { WorkerAppNotFound: (e) => Effect.fail(e), DatabaseUnavailable: (e) => Effect.fail(e) }, Effect.die)
        )
    })
  })
)
