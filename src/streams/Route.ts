import { PgClient } from "@effect/sql-pg"
import { Context, Deferred, Duration, Effect, Layer, Queue, Schedule } from "effect"
import type { WorkerApp } from "../domain/WorkerApp.ts"
import { WORKER_APPS_CHANNEL, WorkerApps } from "../services/WorkerApps.ts"
import type { JournaledEvent } from "./Journal.ts"

/** The snapshot is also reloaded this often, in case a change notice was missed. */
export const SNAPSHOT_REFRESH_INTERVAL = Duration.seconds(30)
export const listenRetry = Schedule.min([Schedule.exponential("500 millis"), Schedule.spaced("10 seconds")])

/**
 * Where an event goes: the worker app serving its owner, nowhere (unroutable),
 * or not yet: its owner cannot be known now (the Graph API is unavailable), so
 * it stays pending and is routed later.
 */
export type Destination =
  | { readonly _tag: "WorkerApp"; readonly ownerId: string; readonly app: WorkerApp }
  | { readonly _tag: "Unroutable"; readonly ownerId: string }
  | { readonly _tag: "Wait"; readonly reason: string }

/**
 * Routes events from an in-memory snapshot of the active worker apps (no query
 * per event). The snapshot is reloaded on every `worker_apps` change notice
 * (Postgres LISTEN/NOTIFY, so all instances stay in step) and periodically.
 */
export class Router extends Context.Service<Router, {
  /** Waits for the first snapshot, then routes. */
  route(event: JournaledEvent): Effect.Effect<Destination>
  /** Reloads the snapshot now (after an admin change on this instance). */
  readonly refresh: Effect.Effect<void>
  /** The active worker app serving an owner, if any. */
  appFor(ownerId: string): WorkerApp | undefined
}>()("chatico/streams/Route/Router") {
  static readonly layer = Layer.effect(
    Router,
    Effect.gen(function*() {
      const workerApps = yield* WorkerApps
      const pg = yield* PgClient.PgClient
      const loaded = yield* Deferred.make<void>()
      let byOwner = new Map<string, WorkerApp>()

      const refresh = workerApps.all.pipe(
        Effect.tap((apps) =>
          Effect.sync(() => {
            byOwner = new Map(apps.filter((app) => app.is_active).map((app) => [app.owner_id, app]))
          })
        ),
        Effect.andThen(Deferred.succeed(loaded, undefined)),
        Effect.asVoid,
        Effect.catch((error) => Effect.logWarning("worker app snapshot not refreshed", error.message))
      )

      // LISTEN first, then load: a change between the two is still seen.
      const listen = Effect.scoped(Effect.gen(function*() {
        const notices = yield* pg.listen(WORKER_APPS_CHANNEL)
        yield* refresh
        while (true) {
          yield* Queue.take(notices)
          yield* Queue.clear(notices)
          yield* refresh
        }
      })).pipe(
        Effect.tapError((error) => Effect.logWarning("worker app change notices lost, re-listening", String(error))),
        Effect.retry(listenRetry),
        Effect.forever
      )
      yield* Effect.forkScoped(listen)
      yield* Effect.forkScoped(refresh.pipe(Effect.repeat(Schedule.spaced(SNAPSHOT_REFRESH_INTERVAL))))

      const appFor = (ownerId: string) => byOwner.get(ownerId)

      // Owner resolution: `entry` mode takes entry[].id. The Graph API modes
      // (`graph`, `auto` for unknown owners) plug in here; until then they
      // route like `entry`.
      const ownerOf = (event: JournaledEvent) => event.entryId

      const route = (event: JournaledEvent) =>
        Effect.map(Deferred.await(loaded), (): Destination => {
          const ownerId = ownerOf(event)
          const app = byOwner.get(ownerId)
          return app === undefined ? { _tag: "Unroutable", ownerId } : { _tag: "WorkerApp", ownerId, app }
        })

      return Router.of({ route, refresh, appFor })
    })
  )
}
