import { Schema } from "effect"

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { detail: Schema.String },
  { httpApiStatus: 401 }
) {}

/** One field at fault: where it is (`["body", "owner_id"]`) and what is wrong with it. */
export const ValidationIssue = Schema.Struct({
  loc: Schema.Array(Schema.Union([Schema.String, Schema.Number])),
  msg: Schema.String
})

/** A request whose body, path or query does not decode: FastAPI-style 422. */
export class ValidationError extends Schema.TaggedError<ValidationError>()(
  "ValidationError",
  { detail: Schema.Array(ValidationIssue) },
  { httpApiStatus: 422 }
) {}
