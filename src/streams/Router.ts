import { PgClient } from "@effect/sql-pg"
import { Cause, Context, Deferred, Duration, Effect, Fiber, Layer, Queue, Schedule, type Tracer } from "effect"
import type { JournaledEvent } from "../domain/JournaledEvent.ts"
import type { WorkerApp } from "../domain/WorkerApp.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"
import { GraphApi } from "../services/GraphApi.ts"
import { JournalStore } from "../services/JournalStore.ts"
import { MediaOwners, type OwnerLookup } from "../services/MediaOwners.ts"
import { underSpan } from "../services/TraceContext.ts"
import { WORKER_APPS_CHANNEL, WorkerApps } from "../services/WorkerApps.ts"

/** The snapshot is also reloaded this often, in case a change notice was missed. */
export const SNAPSHOT_REFRESH_INTERVAL = Duration.seconds(30)
export const listenRetry = Schedule.min([Schedule.exponential("500 millis"), Schedule.spaced("10 seconds")])
/** Routing notes waiting to be written; when full a note is dropped (the routing itself is not affected). */
export const NOTES_MAILBOX = 10_000
export const NOTES_PER_WRITE = 500
export const NOTES_DRAIN_TIMEOUT = Duration.seconds(2)

/**
 * Where an event goes: a worker app, nowhere (unroutable), or not yet (the Graph API cannot tell its
 * owner now, so it stays pending).
 */
export type Destination =
  | { readonly _tag: "WorkerApp"; readonly ownerId: string; readonly app: WorkerApp }
  | { readonly _tag: "Unroutable"; readonly ownerId: string }
  | { readonly _tag: "Wait"; readonly reason: string }

/**
 * Routes from an in-memory snapshot of the active worker apps, reloaded on every `worker_apps` NOTIFY
 * (all instances stay in step) and periodically; the owner per `OWNER_RESOLUTION` (docs/owner-resolution.md).
 */
export class Router extends Context.Service<Router, {
  /**
   * Waits for the first snapshot, then routes. `span` (the event's publish
   * span, when tracing is on) is the parent of a Graph API lookup's spans.
   */
  route(event: JournaledEvent, span?: Tracer.AnySpan): Effect.Effect<Destination>
  /** Reloads the snapshot now (after an admin change on this instance). */
  readonly refresh: Effect.Effect<void>
}>()("chatico/streams/Router") {
  static readonly layer = Layer.effect(
    Router,
    Effect.gen(function*() {
      const workerApps = yield* WorkerApps
      const database = yield* Database
      const pg = yield* PgClient.PgClient
      const store = yield* JournalStore
      const { ownerResolution: mode } = yield* AppConfig
      const graph = yield* GraphApi
      const mediaOwners = yield* MediaOwners
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
      // Both start once the schema exists, so a fresh database is not a warning.
      yield* Effect.forkScoped(Effect.andThen(database.awaitReady, listen))
      yield* Effect.forkScoped(
        Effect.andThen(database.awaitReady, refresh.pipe(Effect.repeat(Schedule.spaced(SNAPSHOT_REFRESH_INTERVAL))))
      )

      // Why an event went by entry[].id although Meta was asked: written to the
      // journal in batches, off the routing path.
      const notes = yield* Queue.bounded<{ readonly eventId: string; readonly note: string }, Cause.Done>(NOTES_MAILBOX)
      const writeNotes = Effect.gen(function*() {
        const batch = yield* Queue.takeBetween(notes, 1, NOTES_PER_WRITE)
        yield* store.writeRoutingNotes(batch).pipe(
          Effect.catch((error) => Effect.logWarning("routing notes not recorded", error.message))
        )
      })
      const noteWriter = yield* Effect.forkScoped(Effect.forever(writeNotes).pipe(Effect.catchIf(Cause.isDone, () => Effect.void)))
      // At shutdown the notes already queued are written, for at most NOTES_DRAIN_TIMEOUT.
      yield* Effect.addFinalizer(() =>
        Queue.end(notes).pipe(Effect.andThen(Fiber.join(noteWriter)), Effect.timeout(NOTES_DRAIN_TIMEOUT), Effect.ignore)
      )

      const toDestination = (ownerId: string): Destination => {
        const app = byOwner.get(ownerId)
        return app === undefined ? { _tag: "Unroutable", ownerId } : { _tag: "WorkerApp", ownerId, app }
      }

      const byEntryNoted = (event: JournaledEvent, note: string) => {
        Queue.offerUnsafe(notes, { eventId: event.eventId, note: `${mode}: ${note}, routed by entry id` })
        return toDestination(event.entryId)
      }

      const fromLookup = (event: JournaledEvent, mediaId: string, lookup: OwnerLookup): Destination => {
        switch (lookup._tag) {
          case "Owner":
            return toDestination(lookup.ownerId)
          case "NoOwner":
            return byEntryNoted(
              event,
              `the Graph API gives no owner for media ${mediaId}` +
                (lookup.username === null ? "" : ` (only username ${lookup.username})`)
            )
          case "Unresolvable":
            return byEntryNoted(event, `media ${mediaId} cannot be resolved (${lookup.detail})`)
        }
      }

      // A slow lookup holds only its own key (the lanes publish other keys meanwhile); the Graph API
      // client bounds it with its own timeout.
      const throughGraph = (event: JournaledEvent, mediaId: string, span: Tracer.AnySpan | undefined) =>
        underSpan(mediaOwners.lookup(mediaId), span).pipe(
          Effect.map((lookup) => fromLookup(event, mediaId, lookup)),
          Effect.catch((error) =>
            Effect.succeed<Destination>({
              _tag: "Wait",
              reason: `graph: ${error.reason._tag}: ${error.reason.detail}`
            })
          )
        )

      const route = (event: JournaledEvent, span?: Tracer.AnySpan) =>
        Effect.flatMap(Deferred.await(loaded), () => {
          const mediaId = event.mediaId
          if (!graph.enabled || mediaId === null || (mode === "auto" && byOwner.has(event.entryId))) {
            return Effect.succeed(toDestination(event.entryId))
          }
          return throughGraph(event, mediaId, span)
        })

      return Router.of({ route, refresh })
    })
  )
}
