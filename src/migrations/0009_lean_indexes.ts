import { Effect } from "effect"
import { SqlClient } from "effect/sql"

// Fewer index entries per event. Before this, an event cost 7 index entries at insert and, as its
// outcome UPDATE changes indexed columns (never a HOT update), 5 more.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // The sweeper and the backlog count read the other partial index of pending rows (entry_id, seq);
  // without this one, lease renewals and claims change no indexed column and can be HOT updates.
  yield* sql`DROP INDEX IF EXISTS webhook_events_pending_idx`
  // `?worker_app_id=` only ever finds routed rows: a pending row (no app yet) gets no entry.
  yield* sql`
    CREATE INDEX IF NOT EXISTS webhook_events_app_idx ON webhook_events (worker_app_id, received_at DESC, event_id DESC)
    WHERE worker_app_id IS NOT NULL
  `
  yield* sql`DROP INDEX IF EXISTS webhook_events_worker_app_idx`
  // `?status=` for the rare outcomes only: `routed` (nearly every row) is read in page order from
  // webhook_events_received_idx, `pending` from the pending rows' index; so the common path, pending
  // then routed, writes no entry here.
  yield* sql`
    CREATE INDEX IF NOT EXISTS webhook_events_settled_status_idx ON webhook_events (status, received_at DESC, event_id DESC)
    WHERE status NOT IN ('pending', 'routed')
  `
  yield* sql`DROP INDEX IF EXISTS webhook_events_status_idx`
})
