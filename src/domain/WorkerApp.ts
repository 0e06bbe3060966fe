import { Schema, SchemaTransformation, Struct } from "effect"
import { DatabaseUnavailable } from "./Errors.ts"
import { isWithoutNul } from "./Text.ts"

export const WorkerAppId = Schema.String.check(
  Schema.isUUID(undefined, { message: "must be a UUID" })
).pipe(Schema.brand("WorkerAppId"))
export type WorkerAppId = typeof WorkerAppId.Type

// Names are compared in NFC, so "é" typed as one code point or as e + accent is one name.
export const WorkerAppName = Schema.String.pipe(
  Schema.decodeTo(
    Schema.String.check(
      Schema.isMinLength(1, { message: "must not be empty" }),
      Schema.isMaxLength(200, { message: "must be at most 200 characters" }),
      Schema.makeFilter((name: string) => name.trim().length > 0 || "must not be blank"),
      isWithoutNul
    ),
    SchemaTransformation.transform({ decode: (name: string) => name.normalize("NFC"), encode: (name: string) => name })
  )
)

/** An Instagram account id: digits, no leading zero (`017` is not the account `17`). */
export const OwnerId = Schema.String.check(
  // The `u` flag lets the pattern into the OpenAPI document (JSON Schema patterns are Unicode).
  Schema.isPattern(/^[1-9][0-9]{0,31}$/u, { message: "must be a string of 1 to 32 digits, without leading zeros" })
)

// RabbitMQ reserves `amq.` (in any case); `chatico.` names the service's own queues.
export const QueueName = Schema.String.check(
  Schema.isPattern(/^[A-Za-z0-9._:-]{1,200}$/u, {
    message: "must be 1 to 200 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'"
  }),
  Schema.makeFilter((name: string) => {
    const lower = name.toLowerCase()
    return !(lower.startsWith("amq.") || lower.startsWith("chatico.")) || "must not start with 'amq.' or 'chatico.' (in any case)"
  }),
  Schema.makeFilter((name: string) => !name.endsWith(".dlq") || "must not end with '.dlq' (reserved for dead letters)")
)

export const Description = Schema.NullOr(
  Schema.String.check(Schema.isMaxLength(2000, { message: "must be at most 2000 characters" }), isWithoutNul)
)

export class WorkerApp extends Schema.Class<WorkerApp>("WorkerApp")({
  id: WorkerAppId,
  name: Schema.String,
  owner_id: Schema.String,
  queue_name: Schema.String,
  is_active: Schema.Boolean,
  description: Schema.NullOr(Schema.String),
  created_at: Schema.String,
  updated_at: Schema.String
}) {}

export const WorkerAppCreate = Schema.Struct({
  name: WorkerAppName,
  owner_id: OwnerId,
  queue_name: QueueName,
  description: Schema.optionalKey(Description),
  is_active: Schema.optionalKey(Schema.Boolean)
}).annotate({
  identifier: "WorkerAppCreate",
  description: "A new worker app. Unknown fields are refused (422), not ignored."
})
export type WorkerAppCreate = typeof WorkerAppCreate.Type

export const WorkerAppUpdate = WorkerAppCreate.mapFields(
  Struct.mapPick(["name", "owner_id", "queue_name"], Schema.optionalKey)
).annotate({
  identifier: "WorkerAppUpdate",
  description: "Any subset of the writable fields. Unknown fields are refused (422), not ignored."
})
export type WorkerAppUpdate = typeof WorkerAppUpdate.Type

export const WorkerAppList = Schema.Struct({
  items: Schema.Array(WorkerApp),
  total: Schema.Int
}).annotate({ identifier: "WorkerAppList" })

export const ListFilter = Schema.Struct({
  is_active: Schema.optionalKey(Schema.Boolean),
  owner_id: Schema.optionalKey(Schema.String),
  limit: Schema.Int,
  offset: Schema.Int
})
export type ListFilter = typeof ListFilter.Type

export class WorkerAppNotFound extends Schema.TaggedError<WorkerAppNotFound>()(
  "WorkerAppNotFound",
  { detail: Schema.String },
  { httpApiStatus: 404 }
) {}

export class WorkerAppConflict extends Schema.TaggedError<WorkerAppConflict>()(
  "WorkerAppConflict",
  { detail: Schema.String, field: Schema.String },
  { httpApiStatus: 409 }
) {}

/** The one error of the WorkerApps service. */
export class WorkerAppsError extends Schema.TaggedError<WorkerAppsError>()("WorkerAppsError", {
  reason: Schema.Union([WorkerAppNotFound, WorkerAppConflict, DatabaseUnavailable])
}) {
  override get message() {
    return `${this.reason._tag}: ${this.reason.detail}`
  }
}
