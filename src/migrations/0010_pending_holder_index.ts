import { Effect } from "effect"
import { SqlClient } from "effect/sql"

/** The holder of pending events released before this migration: no instance has this id. */
const NO_HOLDER = "00000000-0000-0000-0000-000000000000"

// Pending events by holder, so the journal insert learns in two index range probes whether any
// event is pending under another holder before it searches the keys it writes. Every pending
// event has a holder from now on (a release keeps it; it is gone once forgotten); those released
// before get one that is gone.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE webhook_events SET claimed_by = ${NO_HOLDER}::uuid WHERE status = 'pending' AND claimed_by IS NULL`
  yield* sql`
    CREATE INDEX IF NOT EXISTS webhook_events_pending_holder_idx ON webhook_events (claimed_by)
    WHERE status = 'pending'
  `
})
