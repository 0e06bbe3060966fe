import { PgTypes } from "@effect/sql-pg"
import { Clock, Context, Duration, Effect, Layer, Schema } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import type { WebhookEvent } from "../domain/Webhook.ts"
import { AppConfig } from "./AppConfig.ts"
import { pgArray } from "./Database.ts"
import { INSTANCE_GONE_AFTER_SECONDS, Lanes } from "./Lanes.ts"

/** Retries of a statement Postgres aborted as a deadlock or a serialization failure. */
export const JOURNAL_CONFLICT_RETRIES = 3
/** Rows deleted per retention statement, so retention never holds long locks. */
export const RETENTION_BATCH = 1000

/** SQL failures that say the database is away rather than that a statement or row is bad. */
const connectionFaults = new Set(["ConnectionError", "AuthenticationError", "AuthorizationError"])

/** A journal statement failed: the database is away (`unavailable`), or it refused the statement (`rejected`). */
export class JournalStoreError extends Schema.TaggedError<JournalStoreError>()("JournalStoreError", {
  reason: Schema.Literals(["unavailable", "rejected"]),
  message: Schema.String
}) {}

const fromSql = (error: SqlError.SqlError) =>
  new JournalStoreError({
    reason: connectionFaults.has(error.reason._tag) ? "unavailable" : "rejected",
    message: error.message
  })

const isConflict = (error: SqlError.SqlError) =>
  error.reason._tag === "DeadlockError" || error.reason._tag === "SerializationError"

export type JournalStatus = "pending" | "ignored" | "invalid"

/** An event to journal, with what its request gives it. */
export interface NewRow {
  readonly event: WebhookEvent
  readonly receivedAt: Date
  readonly status: JournalStatus
  /** The webhook's trace as the row's `trace_context` (JSON text), or null. */
  readonly traceContext: string | null
}

/** What the insert says of a row it wrote; a row it did not write (already journaled) is not listed. */
export interface Inserted {
  readonly event_id: string
  /** An older event of the same key is pending under a holder that is gone: read the key back in order. */
  readonly behind: boolean
}

/** Where an event ended, or why it still waits, written back to its row. */
export interface OutcomeRow {
  readonly event: { readonly eventId: string }
  readonly status: "routed" | "unroutable" | "dead_lettered" | "pending"
  readonly ownerId: string | null
  readonly appId: string | null
  readonly attempts: number
  readonly lastError: string | null
  /** When it reached its end (epoch millis; `delivered_at`), or null while it is pending. */
  readonly settledAt: number | null
}

/** A pending row read back for delivery. */
export interface PendingRow {
  readonly event_id: string
  readonly object: string
  readonly field: string
  readonly entry_id: string
  readonly entry_time: string | null
  readonly media_id: string | null
  readonly value_raw: string
  readonly received_at: Date | string
  readonly attempts: number
  readonly trace_context: unknown
  readonly seq: string
  /** This instance holds it. */
  readonly mine: boolean
  /** Its lease ran out or its holder is gone: anyone may take it. */
  readonly free: boolean
}

const textArray = (values: ReadonlyArray<string | null>) => pgArray(values, PgTypes.OID.text)
const timeArray = (values: ReadonlyArray<Date | null>) => pgArray(values, PgTypes.OID.timestamptz)

/** Its holder is gone (not seen for INSTANCE_GONE_AFTER_SECONDS), or it has none. */
const holderGone = (sql: SqlClient.SqlClient, row: string) =>
  sql`NOT EXISTS (
    SELECT 1 FROM delivery_instances d
    WHERE d.id = ${sql.literal(row)}.claimed_by AND d.seen_at > now() - make_interval(secs => ${INSTANCE_GONE_AFTER_SECONDS})
  )`

/** Free to take: its lease ran out, or its holder is gone. */
const free = (sql: SqlClient.SqlClient, row: string) =>
  sql`(${sql.literal(row)}.lease_until IS NULL OR ${sql.literal(row)}.lease_until < now() OR (${sql.literal(row)}.claimed_by IS NOT NULL AND ${holderGone(sql, row)}))`

/** Who writes to the journal: this instance, when it started, and the lease of the events it writes. */
export interface Writer {
  readonly me: string
  readonly startedAt: Date
  readonly leaseUntil: Date
}

/**
 * The journal insert of `rows` and `repeats`, one statement (exported so a test can EXPLAIN the very
 * statement the service runs). Every column is one array parameter (`unnest`), so the statement is
 * the same whatever the number of rows, and one statement needs no BEGIN/COMMIT; WITH ORDINALITY
 * keeps the body's order.
 */
export const insertStatement = (
  sql: SqlClient.SqlClient,
  rows: ReadonlyArray<NewRow>,
  repeats: ReadonlyArray<NewRow>,
  { leaseUntil, me, startedAt }: Writer
) =>
  Effect.gen(function*() {
    const columns = yield* Effect.all([
      textArray(rows.map(({ event }) => event.eventId)),
      timeArray(rows.map((row) => row.receivedAt)),
      textArray(rows.map(({ event }) => event.object)),
      textArray(rows.map(({ event }) => event.field)),
      textArray(rows.map(({ event }) => event.entryId)),
      textArray(rows.map(({ event }) => event.entryTimeText)),
      textArray(rows.map(({ event }) => event.mediaId)),
      textArray(rows.map((row) => row.status)),
      textArray(rows.map(({ event }) => event.valueRaw)),
      textArray(rows.map((row) => row.traceContext)),
      textArray(rows.map(({ event }) => event.problem)),
      textArray(repeats.map(({ event }) => event.eventId)),
      timeArray(repeats.map((repeat) => repeat.receivedAt))
    ])
    const [ids, receivedAts, objects, fields, entryIds, entryTimes, mediaIds, statuses, raws, traces, problems] = columns
    const [repeatIds, repeatTimes] = [columns[11], columns[12]]
    // `behind`: an older event of the same key is pending under another holder that is gone
    // (crashed, stopped, or none), that released it (a shutdown), or that wrote it before this
    // instance started (a restart after a crash, while the old heartbeat still looks alive). Another live instance's newer event is
    // not waited for (README). The search of each key's older events is skipped when no
    // event is pending under another holder: it reads every pending event of the key, this
    // instance's too, which a broker away for 30 s made 3,000 per key (README, "Performance").
    return sql<Inserted>`
      WITH u AS (
        SELECT * FROM unnest(${ids}::text[], ${receivedAts}::timestamptz[], ${objects}::text[], ${fields}::text[],
                             ${entryIds}::text[], ${entryTimes}::text[], ${mediaIds}::text[], ${statuses}::text[],
                             ${raws}::text[], ${traces}::text[], ${problems}::text[])
          WITH ORDINALITY AS u(event_id, received_at, object, field, entry_id, entry_time, media_id, status,
                               value_raw, trace_context, last_error, position)
      ), inserted AS (
        INSERT INTO webhook_events (event_id, received_at, object, field, entry_id, entry_time, media_id, status,
                                    value_raw, trace_context, last_error, lease_until, claimed_by)
        SELECT u.event_id, u.received_at, u.object, u.field, u.entry_id, u.entry_time, u.media_id, u.status,
               u.value_raw, u.trace_context::jsonb, u.last_error, ${leaseUntil}, ${me}::uuid
        FROM u
        ORDER BY u.position
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id, entry_id, seq, status
      ), others AS (
        -- Whether any event is pending under another holder, or under none (released by an
        -- instance of an earlier version): probes of two partial indexes, once per statement.
        -- While every pending event is this instance's (one instance; the broker away), no
        -- event's key is searched.
        SELECT EXISTS (SELECT 1 FROM webhook_events WHERE status = 'pending' AND claimed_by < ${me}::uuid)
            OR EXISTS (SELECT 1 FROM webhook_events WHERE status = 'pending' AND claimed_by > ${me}::uuid)
            OR EXISTS (SELECT 1 FROM webhook_events WHERE status = 'pending' AND claimed_by IS NULL) AS elsewhere
      ), duplicates AS (
        INSERT INTO webhook_duplicates (event_id, received_at)
        SELECT u.event_id, u.received_at FROM u WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.event_id = u.event_id)
        UNION ALL
        SELECT * FROM unnest(${repeatIds}::text[], ${repeatTimes}::timestamptz[])
      )
      SELECT i.event_id, i.status = 'pending' AND (SELECT elsewhere FROM others) AND EXISTS (
        SELECT 1 FROM webhook_events p
        WHERE p.status = 'pending' AND p.entry_id = i.entry_id AND p.seq < i.seq
          AND p.claimed_by IS DISTINCT FROM ${me}::uuid
          AND (p.received_at < ${startedAt} OR p.lease_until IS NULL OR ${holderGone(sql, "p")})
      ) AS behind
      FROM inserted i
    `
  })

/** The pipeline's statements on the journal tables; rows this instance writes or claims are held under its id. */
export class JournalStore extends Context.Service<JournalStore, {
  /** One statement: the rows and the duplicates (rows already journaled, and `repeats`) commit together. */
  insert(rows: ReadonlyArray<NewRow>, repeats: ReadonlyArray<NewRow>): Effect.Effect<ReadonlyArray<Inserted>, JournalStoreError>
  /** Outcomes of pending rows; a row no longer pending is left as it is. */
  writeOutcomes(rows: ReadonlyArray<OutcomeRow>): Effect.Effect<void, JournalStoreError>
  /** Why events went by entry id although Meta was asked. */
  writeRoutingNotes(
    notes: ReadonlyArray<{ readonly eventId: string; readonly note: string }>
  ): Effect.Effect<void, JournalStoreError>
  /** Extends the lease of every pending row this instance holds. */
  readonly renewLeases: Effect.Effect<void, JournalStoreError>
  /** Hands every pending row this instance holds to whoever takes it next (shutdown). */
  readonly releaseLeases: Effect.Effect<void, JournalStoreError>
  /** This instance is alive. */
  readonly heartbeat: Effect.Effect<void, JournalStoreError>
  /** This instance is gone (and so is any not seen for a day). */
  readonly forgetInstance: Effect.Effect<void, JournalStoreError>
  /** Up to `perKey` pending rows of each key after its sequence `after`, in journal order. */
  readBacklog(
    keys: ReadonlyArray<string>,
    after: ReadonlyArray<string>,
    perKey: number
  ): Effect.Effect<ReadonlyArray<PendingRow>, JournalStoreError>
  /** Takes the rows that are still pending and free; returns the ids taken. */
  claim(eventIds: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<string>, JournalStoreError>
  /** Keys with free pending rows (their holder's lease is over or the holder is gone), at most `limit`. */
  abandonedKeys(limit: number): Effect.Effect<ReadonlyArray<string>, JournalStoreError>
  /** Deletes up to RETENTION_BATCH settled events older than `age`; returns how many. */
  deleteSettled(age: Duration.Duration): Effect.Effect<number, JournalStoreError>
  /** Deletes up to RETENTION_BATCH recorded duplicates older than `age`; returns how many. */
  deleteDuplicates(age: Duration.Duration): Effect.Effect<number, JournalStoreError>
}>()("chatico/services/JournalStore") {
  static readonly layer = Layer.effect(
    JournalStore,
    Effect.gen(function*() {
      const clock = yield* Clock.Clock
      const sql = yield* SqlClient.SqlClient
      const me = (yield* Lanes).instanceId
      const startedAt = new Date(clock.currentTimeMillisUnsafe())
      const { deliveryLease } = yield* AppConfig
      const leaseMillis = Duration.toMillis(deliveryLease)
      const leaseSeconds = Duration.toSeconds(deliveryLease)

      const insert = (rows: ReadonlyArray<NewRow>, repeats: ReadonlyArray<NewRow>) => {
        const leaseUntil = new Date(clock.currentTimeMillisUnsafe() + leaseMillis)
        return Effect.flatten(insertStatement(sql, rows, repeats, { me, startedAt, leaseUntil })).pipe(
          // Two statements inserting the same ids in other orders may deadlock; Postgres aborts one.
          Effect.retry({ while: isConflict, times: JOURNAL_CONFLICT_RETRIES }),
          Effect.mapError(fromSql)
        )
      }

      // One array parameter per column: the statement's text is the same for every batch, so each
      // connection prepares it once.
      const writeOutcomes = (rows: ReadonlyArray<OutcomeRow>) =>
        Effect.gen(function*() {
          const [ids, statuses, owners, apps, attempts, errors, delivered] = yield* Effect.all([
            textArray(rows.map((o) => o.event.eventId)),
            textArray(rows.map((o) => o.status)),
            textArray(rows.map((o) => o.ownerId)),
            pgArray(rows.map((o) => o.appId), PgTypes.OID.uuid),
            pgArray(rows.map((o) => o.attempts), PgTypes.OID.int4),
            textArray(rows.map((o) => o.lastError)),
            timeArray(rows.map((o) => o.settledAt === null ? null : new Date(o.settledAt)))
          ])
          yield* sql`
            UPDATE webhook_events AS w SET
              status = v.status,
              owner_id = COALESCE(v.owner_id, w.owner_id),
              worker_app_id = COALESCE(v.worker_app_id, w.worker_app_id),
              attempts = v.attempts,
              last_error = v.last_error,
              delivered_at = v.delivered_at
            FROM unnest(${ids}::text[], ${statuses}::text[], ${owners}::text[], ${apps}::uuid[], ${attempts}::int[],
                        ${errors}::text[], ${delivered}::timestamptz[])
              AS v(event_id, status, owner_id, worker_app_id, attempts, last_error, delivered_at)
            WHERE w.event_id = v.event_id AND w.status = 'pending'
          `
        }).pipe(Effect.mapError(fromSql))

      const writeRoutingNotes = (notes: ReadonlyArray<{ readonly eventId: string; readonly note: string }>) =>
        Effect.gen(function*() {
          const ids = yield* textArray(notes.map((n) => n.eventId))
          const texts = yield* textArray(notes.map((n) => n.note))
          yield* sql`
            UPDATE webhook_events AS w SET routing_note = v.note
            FROM unnest(${ids}::text[], ${texts}::text[]) AS v(event_id, note)
            WHERE w.event_id = v.event_id
          `
        }).pipe(Effect.mapError(fromSql))

      // Not the events it released (a renewal racing the shutdown): those are for whoever is next.
      const renewLeases = sql`
        UPDATE webhook_events SET lease_until = now() + make_interval(secs => ${leaseSeconds})
        WHERE status = 'pending' AND claimed_by = ${me} AND lease_until IS NOT NULL
      `.pipe(Effect.asVoid, Effect.mapError(fromSql))

      // The lease ends now and the holder stays named: a released event is waited for like a gone
      // holder's (the insert's `behind`); the holder-less probe finds only older versions' releases.
      const releaseLeases = sql`
        UPDATE webhook_events SET lease_until = NULL
        WHERE status = 'pending' AND claimed_by = ${me}
      `.pipe(Effect.asVoid, Effect.mapError(fromSql))

      const heartbeat = sql`
        INSERT INTO delivery_instances (id, seen_at) VALUES (${me}::uuid, now())
        ON CONFLICT (id) DO UPDATE SET seen_at = now()
      `.pipe(Effect.asVoid, Effect.mapError(fromSql))

      const forgetInstance = sql`
        DELETE FROM delivery_instances WHERE id = ${me}::uuid OR seen_at < now() - interval '1 day'
      `.pipe(Effect.asVoid, Effect.mapError(fromSql))

      const readBacklog = (keys: ReadonlyArray<string>, after: ReadonlyArray<string>, perKey: number) =>
        sql<PendingRow>`
          SELECT e.event_id, e.object, e.field, e.entry_id, e.entry_time, e.media_id, e.value_raw, e.received_at,
                 e.attempts, e.trace_context, e.seq::text AS seq, e.claimed_by IS NOT DISTINCT FROM ${me}::uuid AS mine,
                 ${free(sql, "e")} AS free
          FROM unnest(${keys}::text[], ${after}::text[]) AS k(key, after)
          CROSS JOIN LATERAL (
            SELECT * FROM webhook_events w
            WHERE w.status = 'pending' AND w.entry_id = k.key AND w.seq > k.after::bigint
            ORDER BY w.seq LIMIT ${perKey}
          ) e
          ORDER BY e.entry_id, e.seq
        `.pipe(Effect.mapError(fromSql))

      const claim = (eventIds: ReadonlyArray<string>) =>
        sql<{ readonly event_id: string }>`
          UPDATE webhook_events SET claimed_by = ${me}::uuid, lease_until = now() + make_interval(secs => ${leaseSeconds})
          WHERE event_id = ANY(${eventIds}::text[]) AND status = 'pending' AND ${free(sql, "webhook_events")}
          RETURNING event_id
        `.pipe(Effect.map((rows) => rows.map((row) => row.event_id)), Effect.mapError(fromSql))

      const abandonedKeys = (limit: number) =>
        sql<{ readonly entry_id: string }>`
          SELECT DISTINCT entry_id FROM (
            SELECT entry_id FROM webhook_events
            WHERE status = 'pending' AND ${free(sql, "webhook_events")}
            LIMIT ${limit * 10}
          ) abandoned LIMIT ${limit}
        `.pipe(Effect.map((rows) => rows.map((row) => row.entry_id)), Effect.mapError(fromSql))

      const deleteSettled = (age: Duration.Duration) =>
        sql<{ readonly n: number | string }>`
          WITH old AS (
            SELECT event_id FROM webhook_events
            WHERE received_at < now() - make_interval(secs => ${Duration.toSeconds(age)})
              AND status IN ('routed', 'unroutable', 'dead_lettered', 'ignored', 'invalid')
            LIMIT ${RETENTION_BATCH}
          ), gone AS (DELETE FROM webhook_events w USING old WHERE w.event_id = old.event_id RETURNING 1)
          SELECT count(*)::int AS n FROM gone
        `.pipe(Effect.map((rows) => Number(rows[0]?.n ?? 0)), Effect.mapError(fromSql))

      const deleteDuplicates = (age: Duration.Duration) =>
        sql<{ readonly n: number | string }>`
          WITH old AS (
            SELECT id FROM webhook_duplicates
            WHERE received_at < now() - make_interval(secs => ${Duration.toSeconds(age)}) LIMIT ${RETENTION_BATCH}
          ), gone AS (DELETE FROM webhook_duplicates d USING old WHERE d.id = old.id RETURNING 1)
          SELECT count(*)::int AS n FROM gone
        `.pipe(Effect.map((rows) => Number(rows[0]?.n ?? 0)), Effect.mapError(fromSql))

      return JournalStore.of({
        insert,
        writeOutcomes,
        writeRoutingNotes,
        renewLeases,
        releaseLeases,
        heartbeat,
        forgetInstance,
        readBacklog,
        claim,
        abandonedKeys,
        deleteSettled,
        deleteDuplicates
      })
    })
  )
}
