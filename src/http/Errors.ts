import { Schema, SchemaTransformation } from "effect"
import { HttpApiSchema } from "effect/http-api"
import { DatabaseUnavailable, ValidationIssue } from "../domain/Errors.ts"
import { EventNotFound, InvalidFilter } from "../domain/WebhookLog.ts"
import { WorkerAppConflict, WorkerAppNotFound } from "../domain/WorkerApp.ts"

/** Seconds an admin caller is asked to wait while the database is unavailable. */
export const RETRY_AFTER_SECONDS = 5

export { ValidationIssue }

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { detail: Schema.String },
  { httpApiStatus: 401 }
) {}

/** A request whose body, path or query does not decode: FastAPI-style 422 listing every problem. */
export class ValidationError extends Schema.TaggedError<ValidationError>()(
  "ValidationError",
  { detail: Schema.Array(ValidationIssue) },
  { httpApiStatus: 422 }
) {}

/**
 * An error class as FastAPI writes it on the wire: the body is its fields
 * without `_tag` (the tag routes errors inside the service, callers never see it).
 */
export const onTheWire = <Self extends object, Fields extends Schema.Struct.Fields>(
  errorClass: Schema.Codec<Self, unknown> & { new(fields: Schema.Struct.Type<Fields>): Self },
  identifier: string,
  description: string,
  status: number,
  fields: Fields,
  encode: (error: Self) => Schema.Struct.Type<Fields>
) =>
  Schema.Struct(fields).annotate({ identifier, description }).pipe(
    Schema.decodeTo(
      Schema.toType(errorClass),
      SchemaTransformation.transform({ decode: (body) => new errorClass(body), encode })
    ),
    HttpApiSchema.status(status)
  )

const Detail = { detail: Schema.String }
const detailOf = (error: { readonly detail: string }) => ({ detail: error.detail })

export const NotFoundBody = onTheWire(WorkerAppNotFound, "WorkerAppNotFound", "no worker app with this id", 404, Detail, detailOf)
export const EventNotFoundBody = onTheWire(EventNotFound, "EventNotFound", "no event with this id", 404, Detail, detailOf)
export const ConflictBody = onTheWire(
  WorkerAppConflict,
  "Conflict",
  "name, owner_id or queue_name is already taken; `field` says which",
  409,
  { detail: Schema.String, field: Schema.String },
  (error) => ({ detail: error.detail, field: error.field })
)
export const ValidationBody = onTheWire(
  ValidationError,
  "HTTPValidationError",
  "every invalid field at once: where (`loc`), what is wrong (`msg`) and its kind (`type`)",
  422,
  { detail: Schema.Array(ValidationIssue) },
  (error) => ({ detail: error.detail })
)
export const InvalidFilterBody = onTheWire(
  InvalidFilter,
  "InvalidFilter",
  "a filter that cannot be applied, in the same shape as a validation error",
  422,
  { detail: Schema.Array(ValidationIssue) },
  (error) => ({ detail: error.detail })
)

/** 401 with `WWW-Authenticate: Bearer`, as FastAPI's HTTPBearer answers. */
export const UnauthorizedBody = Unauthorized.pipe(
  HttpApiSchema.encodeToWithHeaders({
    body: Schema.Struct(Detail).annotate({ identifier: "Unauthorized", description: "missing or wrong bearer token" })
      .pipe(HttpApiSchema.status(401)),
    headers: { "www-authenticate": Schema.String }
  }, {
    decode: ({ body }) => new Unauthorized(body),
    encode: (error) => ({ body: detailOf(error), headers: { "www-authenticate": "Bearer" } })
  })
)

/** 503 with `Retry-After`: the database is not reachable (yet). */
export const UnavailableBody = DatabaseUnavailable.pipe(
  HttpApiSchema.encodeToWithHeaders({
    body: Schema.Struct(Detail).annotate({ identifier: "ServiceUnavailable", description: "the database is unavailable; retry later" })
      .pipe(HttpApiSchema.status(503)),
    headers: { "retry-after": Schema.String }
  }, {
    decode: ({ body }) => new DatabaseUnavailable(body),
    encode: (error) => ({ body: detailOf(error), headers: { "retry-after": String(RETRY_AFTER_SECONDS) } })
  })
)
