import { Cache, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Option, Schema } from "effect"
import { Persistence, Redis } from "effect/persistence"
import { SqlClient } from "effect/sql"
import { AppConfig } from "./AppConfig.ts"
import { GraphApi, GraphApiError, RateLimited } from "./GraphApi.ts"
import * as Metrics from "./Metrics.ts"
import { RedisLink } from "./Redis.ts"

/** Distinct media looked up at once; beyond this a lookup waits for a later round. */
export const MAX_PENDING_LOOKUPS = 10_000
/** The `media_owners` table is a cache: a slow query is skipped, not waited for. */
export const TABLE_TIMEOUT = Duration.seconds(2)
/** How long Redis's hot tier keeps an owner (owners never change; the table keeps them for ever). */
export const HOT_OWNER_TTL = Duration.days(1)

/** Meta's owner, its answer without one, or a permanent error; the last two kept for GRAPH_PERMANENT_FAILURE_TTL. */
export type OwnerLookup =
  | { readonly _tag: "Owner"; readonly ownerId: string; readonly username: string | null }
  | { readonly _tag: "NoOwner"; readonly username: string | null }
  | { readonly _tag: "Unresolvable"; readonly detail: string }

interface Known {
  readonly lookup: OwnerLookup
  /** Epoch millis; null for an owner, which never changes. */
  readonly expiresAt: number | null
}

interface OwnerRow {
  readonly owner_id: string | null
  readonly username: string | null
  readonly error: string | null
  readonly expires_at: Date | string | null
}

const KnownSchema = Schema.Struct({
  lookup: Schema.Union([
    Schema.TaggedStruct("Owner", { ownerId: Schema.String, username: Schema.NullOr(Schema.String) }),
    Schema.TaggedStruct("NoOwner", { username: Schema.NullOr(Schema.String) }),
    Schema.TaggedStruct("Unresolvable", { detail: Schema.String })
  ]),
  expiresAt: Schema.NullOr(Schema.Number)
})
const decodeKnown = Schema.decodeUnknownOption(KnownSchema)

const fromRow = (row: OwnerRow): Known => ({
  lookup: row.owner_id !== null
    ? { _tag: "Owner", ownerId: row.owner_id, username: row.username }
    : row.error === null
    ? { _tag: "NoOwner", username: row.username }
    : { _tag: "Unresolvable", detail: row.error },
  expiresAt: row.expires_at === null ? null : new Date(row.expires_at).getTime()
})

/** Memory, then Redis's shared tier, then the `media_owners` table, then Meta; lookups of one media share one call. */
export class MediaOwners extends Context.Service<MediaOwners, {
  /** Fails only when Meta cannot answer now; nothing is kept then, so a later lookup asks again. */
  lookup(mediaId: string): Effect.Effect<OwnerLookup, GraphApiError>
  /** Entries held in memory. */
  readonly size: Effect.Effect<number>
}>()("chatico/services/MediaOwners") {
  static readonly layerNoDeps = Layer.effect(
    MediaOwners,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const sql = yield* SqlClient.SqlClient
      const graph = yield* GraphApi
      const link = yield* RedisLink
      const scope = yield* Effect.scope
      const backing = yield* Layer.build(Persistence.layerBackingRedis.pipe(Layer.provide(Layer.succeed(Redis.Redis, link.redis))))
      const hot = yield* Persistence.BackingPersistence.pipe(
        Effect.flatMap((persistence) => persistence.make(`${link.prefix}owners`)),
        Effect.provideContext(backing)
      )
      const ttlMillis = Duration.toMillis(config.graphPermanentFailureTtl)
      // Taken once, so expiries are computed synchronously (the memory's time-to-live is a plain function).
      const clock = yield* Clock.Clock
      const now = () => clock.currentTimeMillisUnsafe()

      const readTable = (mediaId: string) =>
        sql<OwnerRow>`
          SELECT owner_id, username, error, expires_at FROM media_owners
          WHERE media_id = ${mediaId} AND (expires_at IS NULL OR expires_at > now())
        `.pipe(
          Effect.timeout(TABLE_TIMEOUT),
          Effect.map((rows) => (rows[0] === undefined ? undefined : fromRow(rows[0]))),
          Effect.catch((error) =>
            Effect.as(Effect.logWarning("media_owners not read, asking the Graph API", error.message), undefined)
          )
        )

      // A known owner is never overwritten (two instances may race on one media).
      const writeTable = (mediaId: string, known: Known) => {
        const row = {
          media_id: mediaId,
          owner_id: known.lookup._tag === "Owner" ? known.lookup.ownerId : null,
          username: known.lookup._tag === "Unresolvable" ? null : known.lookup.username,
          error: known.lookup._tag === "Unresolvable" ? known.lookup.detail : null,
          resolved_at: new Date(now()),
          expires_at: known.expiresAt === null ? null : new Date(known.expiresAt)
        }
        return sql`
          INSERT INTO media_owners ${sql.insert(row)}
          ON CONFLICT (media_id) DO UPDATE SET
            owner_id = EXCLUDED.owner_id, username = EXCLUDED.username, error = EXCLUDED.error,
            resolved_at = EXCLUDED.resolved_at, expires_at = EXCLUDED.expires_at
          WHERE media_owners.owner_id IS NULL
        `.pipe(
          Effect.timeout(TABLE_TIMEOUT),
          Effect.catch((error) => Effect.logWarning("media owner not saved (it will be asked again after a restart)", error.message))
        )
      }

      // The hot tier is a shortcut: every Redis call is bounded by RedisLink, and a miss or a failure means "ask the table".
      const readHot = (mediaId: string) =>
        link.shared()
          ? hot.get(mediaId).pipe(
            Effect.map((value) => Option.getOrUndefined(Option.flatMap(Option.fromNullishOr(value), decodeKnown))),
            Effect.map((known) => (known !== undefined && known.expiresAt !== null && known.expiresAt <= now() ? undefined : known)),
            Effect.orElseSucceed(() => undefined)
          )
          : Effect.undefined

      const writeHot = (mediaId: string, known: Known) => {
        const ttl = known.expiresAt === null ? HOT_OWNER_TTL : Duration.millis(Math.max(1, known.expiresAt - now()))
        return link.shared() ? Effect.ignore(hot.set(mediaId, known, ttl)) : Effect.void
      }

      const ask = (mediaId: string) =>
        graph.mediaOwner(mediaId).pipe(
          Effect.map((owner): Known => ({
            lookup: { _tag: "Owner", ownerId: owner.ownerId, username: owner.username },
            expiresAt: null
          })),
          Effect.catch((error) => {
            const reason = error.reason
            if (reason._tag === "NoOwner") {
              return Effect.succeed<Known>({
                lookup: { _tag: "NoOwner", username: reason.username },
                expiresAt: now() + ttlMillis
              })
            }
            if (reason._tag === "Permanent") {
              return Effect.succeed<Known>({
                lookup: { _tag: "Unresolvable", detail: reason.detail },
                expiresAt: now() + ttlMillis
              })
            }
            return Effect.fail(error)
          }),
          Effect.tap((known) => Effect.andThen(writeTable(mediaId, known), writeHot(mediaId, known)))
        )

      const resolve = (mediaId: string) =>
        Effect.flatMap(readHot(mediaId), (hit) =>
          hit !== undefined
            ? Effect.succeed(hit)
            : Effect.flatMap(readTable(mediaId), (known) =>
              known === undefined ? ask(mediaId) : Effect.as(writeHot(mediaId, known), known)
            ))

      // Beyond MAX_PENDING_LOOKUPS runs a new media fails at once; the failure is not kept.
      let pending = 0
      const start = (mediaId: string): Effect.Effect<Known, GraphApiError> =>
        Effect.suspend(() => {
          if (pending >= MAX_PENDING_LOOKUPS) {
            return Effect.fail(
              new GraphApiError({
                mediaId,
                reason: new RateLimited({ retryAfterMillis: 1000, detail: "too many owner lookups waiting" })
              })
            )
          }
          pending++
          return Metrics.count(Metrics.ownerCache, { result: "miss" }).pipe(
            Effect.andThen(resolve(mediaId)),
            Effect.ensuring(Effect.sync(() => {
              pending--
            }))
          )
        })

      const memory = yield* Cache.makeWith(start, {
        capacity: config.graphCacheSize,
        // Owners for ever, NoOwner and Unresolvable until they expire, failures not at all.
        timeToLive: (exit) =>
          Exit.isFailure(exit)
            ? Duration.zero
            : exit.value.expiresAt === null
            ? Duration.infinity
            : Duration.millis(Math.max(0, exit.value.expiresAt - now()))
      })

      const lookup = (mediaId: string): Effect.Effect<OwnerLookup, GraphApiError> =>
        Cache.has(memory, mediaId).pipe(
          Effect.flatMap((held) =>
            held
              ? Effect.andThen(Metrics.count(Metrics.ownerCache, { result: "hit" }), Cache.get(memory, mediaId))
              // The first caller waits on a fiber of the layer's scope, so a caller that stops waiting never cancels the run.
              : Effect.flatMap(Effect.forkIn(Cache.get(memory, mediaId), scope, { startImmediately: true }), Fiber.join)
          ),
          Effect.map((known) => known.lookup)
        )

      return MediaOwners.of({ lookup, size: Cache.size(memory) })
    })
  )

  /** With the Graph API client; `GraphApi` is exposed too (for its health check). */
  static readonly layer = this.layerNoDeps.pipe(Layer.provideMerge(GraphApi.layer), Layer.provide(RedisLink.layer))
}
