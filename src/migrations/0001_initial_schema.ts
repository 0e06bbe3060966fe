import { Effect } from "effect"
import { SqlClient } from "effect/sql"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  yield* sql`
    CREATE TABLE worker_apps (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL UNIQUE,
      owner_id text NOT NULL UNIQUE,
      queue_name text NOT NULL UNIQUE,
      is_active boolean NOT NULL DEFAULT true,
      description text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )
  `

  // The journal: one row per event, written before the webhook is answered.
  // `value` is the change as Meta sent it (jsonb for queries); `value_raw`
  // keeps its exact bytes, which is what a worker app receives.
  yield* sql`
    CREATE TABLE webhook_events (
      event_id text PRIMARY KEY,
      received_at timestamptz NOT NULL,
      object text NOT NULL,
      field text NOT NULL,
      entry_id text NOT NULL,
      entry_time bigint,
      media_id text,
      owner_id text,
      worker_app_id uuid,
      status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'routed', 'unroutable', 'dead_lettered', 'ignored')),
      attempts integer NOT NULL DEFAULT 0,
      last_error text,
      value jsonb NOT NULL,
      value_raw text NOT NULL,
      trace_context jsonb,
      lease_until timestamptz,
      delivered_at timestamptz
    )
  `
  // Webhook logs: newest first, optionally by status, owner or worker app,
  // paged by the (received_at, event_id) cursor.
  yield* sql`CREATE INDEX webhook_events_received_idx ON webhook_events (received_at DESC, event_id DESC)`
  yield* sql`CREATE INDEX webhook_events_status_idx ON webhook_events (status, received_at DESC, event_id DESC)`
  yield* sql`CREATE INDEX webhook_events_owner_idx ON webhook_events (owner_id, received_at DESC, event_id DESC)`
  yield* sql`
    CREATE INDEX webhook_events_worker_app_idx ON webhook_events (worker_app_id, received_at DESC, event_id DESC)
  `
  // The recovery sweeper only ever looks at pending rows.
  yield* sql`
    CREATE INDEX webhook_events_pending_idx ON webhook_events (lease_until NULLS FIRST, received_at)
    WHERE status = 'pending'
  `

  // Meta's redeliveries of an already journaled event: recorded, never delivered again.
  yield* sql`
    CREATE TABLE webhook_duplicates (
      id bigserial PRIMARY KEY,
      event_id text NOT NULL,
      received_at timestamptz NOT NULL
    )
  `
  yield* sql`CREATE INDEX webhook_duplicates_received_idx ON webhook_duplicates (received_at DESC, id DESC)`
  yield* sql`CREATE INDEX webhook_duplicates_event_idx ON webhook_duplicates (event_id)`

  // A media's owner never changes; failures that are permanent for a media
  // are cached until `expires_at`.
  yield* sql`
    CREATE TABLE media_owners (
      media_id text PRIMARY KEY,
      owner_id text,
      username text,
      error text,
      resolved_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz
    )
  `
})
