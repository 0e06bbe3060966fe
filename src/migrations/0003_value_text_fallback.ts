import { Effect } from "effect"
import { SqlClient } from "effect/sql"

// A value Postgres cannot hold as jsonb (a `\u0000` escape, a number beyond
// `numeric`, nesting deeper than its parser allows) is still journaled: its
// exact text is in `value_raw`, which is what gets delivered, and `value` is null.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE webhook_events ALTER COLUMN value DROP NOT NULL`
})
