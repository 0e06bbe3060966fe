import { Schema } from "effect"

/** Postgres cannot be reached (or is not migrated yet): answered with 503 so the caller retries. */
export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()(
  "DatabaseUnavailable",
  { detail: Schema.String },
  { httpApiStatus: 503 }
) {}

/** One problem with a request as FastAPI reports it, e.g. loc `["body", "owner_id"]`, type `missing`. */
export const ValidationIssue = Schema.Struct({
  loc: Schema.Array(Schema.Union([Schema.String, Schema.Number])),
  msg: Schema.String,
  type: Schema.String
})
export type ValidationIssue = typeof ValidationIssue.Type
