import type { SqlClient } from "effect/sql"
import type { EventStatus, ReplayFilter } from "../domain/WebhookLog.ts"

// The journal's reads for operators and the console, and the replay's update. Each statement is a
// builder over the caller's client, exported so the tests EXPLAIN the very SQL the service runs.

export interface WebhookLogQuery {
  readonly status?: EventStatus | undefined
  readonly owner_id?: string | undefined
  readonly worker_app_id?: string | undefined
  readonly since?: string | undefined
  /** Only events received before this time (the console's time range). */
  readonly until?: string | undefined
  readonly limit: number
  readonly cursor?: string | undefined
}

export interface LogRow {
  readonly event_id: string
  readonly received_at: Date | string
  readonly status: EventStatus
  readonly object: string
  readonly field: string
  readonly entry_id: string
  readonly media_id: string | null
  readonly owner_id: string | null
  readonly worker_app_id: string | null
  readonly attempts: number
  readonly last_error: string | null
  readonly delivered_at: Date | string | null
  readonly value: unknown
  readonly routing_note: string | null
  readonly seq: string | number
}

export interface EventRow extends LogRow {
  readonly entry_time: string | number | null
  readonly duplicates: string | number
  readonly trace_context: unknown
}

/**
 * The owner an event is listed under: the routed owner, or the entry's account
 * while it is pending with none yet. `webhook_events_owner_or_entry_idx` indexes it.
 */
export const ownerOrEntry = (sql: SqlClient.SqlClient, ownerId: string, joined = false) =>
  joined
    ? sql`COALESCE(e.owner_id, CASE WHEN e.status = 'pending' THEN e.entry_id END) = ${ownerId}`
    : sql`COALESCE(owner_id, CASE WHEN status = 'pending' THEN entry_id END) = ${ownerId}`

/**
 * `status = '…'` with the status written as a literal: the planner matches a literal, never a bound
 * parameter, to the partial index of settled statuses (`webhook_events_settled_status_idx`).
 */
export const statusIs = (sql: SqlClient.SqlClient, status: EventStatus) =>
  /^[a-z_]+$/.test(status) ? sql`status = ${sql.literal(`'${status}'`)}` : sql`status = ${status}`

// A page of `limit` rows (one more was read to know whether another page follows);
// the cursor is the last row's (received_at, seq).
/**
 * The SELECT of one webhook-log page: `limit + 1` rows newest first, after
 * `cursor`. Exported so the tests EXPLAIN the very statement the service runs.
 */
export const webhookLogSelect = (
  sql: SqlClient.SqlClient,
  query: Pick<WebhookLogQuery, "status" | "owner_id" | "worker_app_id" | "since" | "until">,
  cursor: readonly [string, string] | undefined,
  limit: number
) => {
  if (query.status === "duplicate") {
    // Redeliveries live in their own table, joined to the event they repeat.
    const conditions = [
      ...(query.owner_id === undefined ? [] : [ownerOrEntry(sql, query.owner_id, true)]),
      ...(query.worker_app_id === undefined ? [] : [sql`e.worker_app_id = ${query.worker_app_id}`]),
      ...(query.since === undefined ? [] : [sql`d.received_at >= ${new Date(query.since)}`]),
      ...(query.until === undefined ? [] : [sql`d.received_at < ${new Date(query.until)}`]),
      ...(cursor === undefined ? [] : [sql`(d.received_at, d.id) < (${new Date(cursor[0])}, ${cursor[1]}::bigint)`])
    ]
    return sql<LogRow>`
      SELECT e.event_id, d.received_at, 'duplicate' AS status, e.object, e.field, e.entry_id, e.media_id,
             e.owner_id, e.worker_app_id, e.attempts, e.last_error, e.delivered_at, chatico_jsonb_or_null(e.value_raw) AS value, e.routing_note, d.id AS seq
      FROM webhook_duplicates d JOIN webhook_events e ON e.event_id = d.event_id
      WHERE ${sql.and(conditions)}
      ORDER BY d.received_at DESC, d.id DESC
      LIMIT ${limit + 1}
    `
  }
  const conditions = [
    ...(query.status === undefined ? [] : [statusIs(sql, query.status)]),
    ...(query.owner_id === undefined ? [] : [ownerOrEntry(sql, query.owner_id)]),
    ...(query.worker_app_id === undefined ? [] : [sql`worker_app_id = ${query.worker_app_id}`]),
    ...(query.since === undefined ? [] : [sql`received_at >= ${new Date(query.since)}`]),
    ...(query.until === undefined ? [] : [sql`received_at < ${new Date(query.until)}`]),
    ...(cursor === undefined ? [] : [sql`(received_at, event_id) < (${new Date(cursor[0])}, ${cursor[1]})`])
  ]
  return sql<LogRow>`
    SELECT event_id, received_at, status, object, field, entry_id, media_id, owner_id, worker_app_id,
           attempts, last_error, delivered_at, chatico_jsonb_or_null(value_raw) AS value, routing_note, event_id AS seq
    FROM webhook_events
    WHERE ${sql.and(conditions)}
    ORDER BY received_at DESC, event_id DESC
    LIMIT ${limit + 1}
  `
}


export const eventSelect = (sql: SqlClient.SqlClient, eventId: string) =>
  sql<EventRow>`
    SELECT event_id, received_at, status, object, field, entry_id, entry_time, media_id, owner_id, worker_app_id,
           attempts, last_error, delivered_at, chatico_jsonb_or_null(value_raw) AS value, routing_note, trace_context, event_id AS seq,
           (SELECT count(*) FROM webhook_duplicates d WHERE d.event_id = webhook_events.event_id) AS duplicates
    FROM webhook_events WHERE event_id = ${eventId}
  `

export const eventExists = (sql: SqlClient.SqlClient, eventId: string) =>
  sql`SELECT 1 FROM webhook_events WHERE event_id = ${eventId}`

/** The conditions of a replay by filter (none when the filter names nothing). */
export const replayConditions = (sql: SqlClient.SqlClient, filter: ReplayFilter) => [
  ...(filter.status === undefined ? [] : [statusIs(sql, filter.status)]),
  ...(filter.owner_id === undefined ? [] : [ownerOrEntry(sql, filter.owner_id)]),
  ...(filter.worker_app_id === undefined ? [] : [sql`worker_app_id = ${filter.worker_app_id}`]),
  ...(filter.since === undefined ? [] : [sql`received_at >= ${new Date(filter.since)}`]),
  ...(filter.until === undefined ? [] : [sql`received_at < ${new Date(filter.until)}`])
]

/**
 * Settled events matching `where`, oldest first, at most `max`, back to `pending` under `instanceId`'s
 * lease; `matched` counts up to one more than `max`. Events already pending are left alone.
 */
export const replayUpdate = (
  sql: SqlClient.SqlClient,
  where: ReturnType<SqlClient.SqlClient["and"]>,
  options: { readonly instanceId: string; readonly leaseSeconds: number; readonly max: number }
) =>
  sql<{ readonly event_id: string; readonly entry_id: string; readonly matched: number | string }>`
    WITH chosen AS (
      SELECT event_id FROM webhook_events
      WHERE ${where} AND status IN ('routed', 'unroutable', 'dead_lettered')
      ORDER BY received_at
      LIMIT ${options.max + 1}
      FOR UPDATE SKIP LOCKED
    ), limited AS (SELECT event_id FROM chosen LIMIT ${options.max})
    UPDATE webhook_events AS w
    SET status = 'pending', delivered_at = NULL, last_error = NULL,
        claimed_by = ${options.instanceId}::uuid, lease_until = now() + make_interval(secs => ${options.leaseSeconds})
    FROM limited WHERE w.event_id = limited.event_id
    RETURNING w.event_id, w.entry_id, (SELECT count(*) FROM chosen) AS matched
  `

/** How many settled events a replay of `where` would take, up to `max + 1`. */
export const replayCount = (sql: SqlClient.SqlClient, where: ReturnType<SqlClient.SqlClient["and"]>, max: number) =>
  sql<{ readonly matched: number | string }>`
    SELECT count(*)::int AS matched FROM (
      SELECT 1 FROM webhook_events
      WHERE ${where} AND status IN ('routed', 'unroutable', 'dead_lettered')
      LIMIT ${max + 1}
    ) AS chosen
  `

export const pendingCountSelect = (sql: SqlClient.SqlClient) =>
  sql<{ readonly n: number | string }>`SELECT count(*)::int AS n FROM webhook_events WHERE status = 'pending'`

// Reads the partial index of pending rows only.
export const pendingBacklogSelect = (sql: SqlClient.SqlClient) =>
  sql<{ readonly n: number | string; readonly oldest: number | string | null }>`
    SELECT count(*)::int AS n, EXTRACT(EPOCH FROM now() - min(received_at))::float8 AS oldest
    FROM webhook_events WHERE status = 'pending'
  `

// The console's statements: each walks an index range bounded by the window (or the pending rows),
// never the whole table.

export const eventsPerMinute = (sql: SqlClient.SqlClient, since: Date) =>
  sql<{ readonly minute: Date | string; readonly status: string; readonly n: number | string }>`
    SELECT date_trunc('minute', received_at) AS minute, status, count(*)::int AS n
    FROM webhook_events WHERE received_at >= ${since}
    GROUP BY 1, 2
  `

export const duplicatesPerMinute = (sql: SqlClient.SqlClient, since: Date) =>
  sql<{ readonly minute: Date | string; readonly n: number | string }>`
    SELECT date_trunc('minute', received_at) AS minute, count(*)::int AS n
    FROM webhook_duplicates WHERE received_at >= ${since}
    GROUP BY 1
  `

export const backlogSelect = (sql: SqlClient.SqlClient) =>
  sql<{ readonly pending: number | string; readonly oldest: Date | string | null }>`
    SELECT count(*)::int AS pending, min(received_at) AS oldest FROM webhook_events WHERE status = 'pending'
  `

export const routedPerApp = (sql: SqlClient.SqlClient, since: Date) =>
  sql<{ readonly worker_app_id: string; readonly n: number | string }>`
    SELECT worker_app_id::text AS worker_app_id, count(*)::int AS n
    FROM webhook_events WHERE status = 'routed' AND received_at >= ${since}
    GROUP BY 1
  `

/** The value's exact bytes as Meta sent them (what the worker app receives). */
export const rawValueSelect = (sql: SqlClient.SqlClient, eventId: string) =>
  sql<{ readonly value_raw: string }>`SELECT value_raw FROM webhook_events WHERE event_id = ${eventId}`
