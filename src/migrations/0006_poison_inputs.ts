import { Effect } from "effect"
import { SqlClient } from "effect/sql"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // `entry[].time` exactly as Meta wrote it: 1e19 or 9223372036854775807 do not fit a bigint, 1.5 is no integer.
  yield* sql`ALTER TABLE webhook_events ALTER COLUMN entry_time TYPE text USING entry_time::text`
  // `invalid`: signed and journaled, but it can never be delivered as sent (e.g. U+0000 in an id).
  yield* sql`ALTER TABLE webhook_events DROP CONSTRAINT IF EXISTS webhook_events_status_check`
  yield* sql`
    ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_status_check
    CHECK (status IN ('pending', 'routed', 'unroutable', 'dead_lettered', 'ignored', 'invalid'))
  `
  // Per row, so one value jsonb refuses (a \u0000 escape, a number beyond numeric, deep nesting)
  // becomes null instead of failing the statement that carries the others.
  yield* sql`
    CREATE OR REPLACE FUNCTION chatico_jsonb_or_null(raw text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    BEGIN
      RETURN raw::jsonb;
    EXCEPTION WHEN others THEN
      RETURN NULL;
    END
    $$
  `
})
