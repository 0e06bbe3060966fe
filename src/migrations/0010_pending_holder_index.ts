import { Effect } from "effect"
import { SqlClient } from "effect/sql"

// Pending events by holder, so the journal insert learns in a few index probes whether any event
// is pending under another holder before it searches the keys it writes. A release keeps the
// holder from now on; events without one (released by an earlier version, also during a rolling
// upgrade) have their own index, which a new event, always held, never enters.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE INDEX IF NOT EXISTS webhook_events_pending_holder_idx ON webhook_events (claimed_by)
    WHERE status = 'pending'
  `
  yield* sql`
    CREATE INDEX IF NOT EXISTS webhook_events_pending_unheld_idx ON webhook_events (entry_id, seq)
    WHERE status = 'pending' AND claimed_by IS NULL
  `
})
