import { Effect } from "effect"
import { SqlClient } from "effect/sql"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  // Why an event went where it went, when that is not plain from its owner:
  // e.g. `graph` mode falling back to entry[].id because Meta gave no owner.
  yield* sql`ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS routing_note text`
})
