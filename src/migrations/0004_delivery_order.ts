import { Effect } from "effect"
import { SqlClient } from "effect/sql"

// Delivery in order per account: `seq` is the journal order (assigned at insert), `claimed_by`
// the instance that holds a pending event (it renews `lease_until` while it lives).
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS seq bigserial`
  yield* sql`ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS claimed_by uuid`
  // A key's pending events in journal order: the backlog reader and the order check at insert.
  yield* sql`
    CREATE INDEX IF NOT EXISTS webhook_events_pending_key_idx ON webhook_events (entry_id, seq)
    WHERE status = 'pending'
  `
})
