import { Schema } from "effect"

/** Postgres cannot be reached (or is not migrated yet): answered with 503 so the caller retries. */
export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()(
  "DatabaseUnavailable",
  { detail: Schema.String },
  { httpApiStatus: 503 }
) {}
