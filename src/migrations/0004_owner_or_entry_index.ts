import { Effect } from "effect"
import { SqlClient } from "effect/sql"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  // `?owner_id=` finds an event by its routed owner, or by its entry's account
  // while it is pending with none yet: one index serves both, in page order.
  yield* sql`
    CREATE INDEX IF NOT EXISTS webhook_events_owner_or_entry_idx
    ON webhook_events ((COALESCE(owner_id, CASE WHEN status = 'pending' THEN entry_id END)), received_at DESC, event_id DESC)
  `
  yield* sql`DROP INDEX IF EXISTS webhook_events_owner_idx`
})
