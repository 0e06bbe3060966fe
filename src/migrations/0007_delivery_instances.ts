import { Effect } from "effect"
import { SqlClient } from "effect/sql"

// The delivering instances and when each was last seen: a pending event whose holder is no longer
// seen is taken over at once (in journal order), without waiting for its lease.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE IF NOT EXISTS delivery_instances (
      id uuid PRIMARY KEY,
      seen_at timestamptz NOT NULL
    )
  `
})
