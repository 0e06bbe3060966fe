import { Effect } from "effect"
import { SqlClient } from "effect/sql"

// The value is kept once, as the exact text Meta sent (`value_raw`): the webhook log derives its
// jsonb form when it reads a page (`chatico_jsonb_or_null`), so the insert no longer parses every
// payload nor writes it twice.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE webhook_events DROP COLUMN IF EXISTS value`
})
