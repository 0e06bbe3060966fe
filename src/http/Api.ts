import { Schema, SchemaTransformation } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "effect/http-api"
import { DatabaseUnavailable } from "../domain/Errors.ts"
import {
  OwnerId,
  WorkerApp,
  WorkerAppConflict,
  WorkerAppCreate,
  WorkerAppId,
  WorkerAppList,
  WorkerAppNotFound,
  WorkerAppUpdate
} from "../domain/WorkerApp.ts"
import {
  EventNotFound,
  EventStatus,
  InvalidFilter,
  QueuesReport,
  ReplayFilter,
  ReplayResult,
  Timestamp,
  WebhookLogEvent,
  WebhookLogPage
} from "../domain/WebhookLog.ts"
import {
  ConflictBody,
  EventNotFoundBody,
  InvalidFilterBody,
  NotFoundBody,
  onTheWire,
  UnauthorizedBody,
  UnavailableBody,
  ValidationBody
} from "./Errors.ts"
import { polishOpenApi } from "./OpenApiPolish.ts"
import { addWebhookPaths } from "./WebhookDocs.ts"

/** Bearer `SECRET_KEY` on every admin and monitoring route. */
export class Authorization extends HttpApiMiddleware.Service<Authorization>()("chatico/http/Authorization", {
  security: { bearer: HttpApiSecurity.bearer },
  error: UnauthorizedBody
}) {}

/** Turns request decoding failures into 422s that name the field at fault. */
export class RequestValidation extends HttpApiMiddleware.Service<RequestValidation>()(
  "chatico/http/RequestValidation",
  { error: ValidationBody }
) {}

export const MAX_PAGE_SIZE = 500

// Decimal digits only: `0x10`, `1e2`, ` 5` or `5.0` are not what a caller meant by a count.
const IntFromString = (name: string, minimum: number, maximum: number) =>
  Schema.String.check(Schema.isPattern(/^[0-9]{1,16}$/, { message: `${name} must be a decimal integer` })).pipe(
    Schema.decodeTo(
      Schema.Number.check(
        Schema.isBetween({ minimum, maximum }, { message: `${name} must be between ${minimum} and ${maximum}` })
      ),
      SchemaTransformation.transform({ decode: (digits: string) => Number(digits), encode: (n: number) => String(n) })
    )
  )

export const WorkerAppsListQuery = {
  // As FastAPI reads a bool: true/false/1/0 in any case.
  is_active: Schema.optional(
    Schema.String.check(
      Schema.isPattern(/^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$/u, { message: "must be true, false, 1 or 0" })
    )
  ),
  owner_id: Schema.optional(OwnerId),
  limit: Schema.optional(IntFromString("limit", 1, MAX_PAGE_SIZE)),
  offset: Schema.optional(IntFromString("offset", 0, Number.MAX_SAFE_INTEGER))
}

const idParam = { id: WorkerAppId }

const EventId = Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/u, { message: "must be 64 hex digits" }))

/** A group of the admin API: behind the admin key, titled in the docs. */
const adminGroup = (title: string, description: string) =>
<Id extends string, Endpoints extends HttpApiEndpoint.Constraint, TopLevel extends boolean>(
  group: HttpApiGroup.HttpApiGroup<Id, Endpoints, TopLevel>
) => group.middleware(Authorization).annotateMerge(OpenApi.annotations({ title, description }))

export class WorkerAppsGroup extends HttpApiGroup.make("workerApps")
  .add(
    HttpApiEndpoint.post("create", "/worker-apps", {
      payload: WorkerAppCreate,
      success: WorkerApp.pipe(HttpApiSchema.status(201)),
      error: [ConflictBody, ValidationBody, UnavailableBody]
    }),
    HttpApiEndpoint.get("list", "/worker-apps", {
      query: WorkerAppsListQuery,
      success: WorkerAppList,
      error: UnavailableBody
    }),
    HttpApiEndpoint.get("get", "/worker-apps/:id", {
      params: idParam,
      success: WorkerApp,
      error: [NotFoundBody, UnavailableBody]
    }),
    HttpApiEndpoint.put("update", "/worker-apps/:id", {
      params: idParam,
      payload: WorkerAppUpdate,
      success: WorkerApp,
      error: [NotFoundBody, ConflictBody, ValidationBody, UnavailableBody]
    }),
    HttpApiEndpoint.delete("remove", "/worker-apps/:id", {
      params: idParam,
      success: HttpApiSchema.NoContent,
      error: [NotFoundBody, UnavailableBody]
    }),
    HttpApiEndpoint.post("toggle", "/worker-apps/:id/toggle", {
      params: idParam,
      success: WorkerApp,
      error: [NotFoundBody, UnavailableBody]
    })
  )
  .pipe(adminGroup(
    "Worker apps",
    "The chat-automation apps events are delivered to, one per Instagram account. " +
      "Every path also answers with a trailing slash."
  ))
{}

const CheckResult = Schema.Struct({
  ok: Schema.Boolean,
  latency_ms: Schema.optionalKey(Schema.Number),
  error: Schema.optionalKey(Schema.String),
  /** Something to look at that does not stop the check passing (an `error` always fails it). */
  warning: Schema.optionalKey(Schema.String),
  detail: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
})

export const HealthChecks = Schema.Record(Schema.String, CheckResult)

export class HealthReport extends Schema.Class<HealthReport>("HealthReport")({
  status: Schema.Literal("ok"),
  checks: HealthChecks
}) {}

export class HealthDegraded extends Schema.TaggedError<HealthDegraded>()(
  "HealthDegraded",
  { status: Schema.Literal("degraded"), failing: Schema.Array(Schema.String), checks: HealthChecks },
  { httpApiStatus: 503 }
) {}

const HealthDegradedBody = onTheWire(
  HealthDegraded,
  "HealthDegraded",
  "a check is failing: `failing` names it, its `error` says why",
  503,
  { status: Schema.Literal("degraded"), failing: Schema.Array(Schema.String), checks: HealthChecks },
  (error) => ({ status: error.status, failing: error.failing, checks: error.checks })
)

export class HealthGroup extends HttpApiGroup.make("health")
  .add(
    HttpApiEndpoint.get("health", "/monitoring/health", {
      success: HealthReport,
      error: HealthDegradedBody
    })
  )
  .annotateMerge(OpenApi.annotations({
    title: "Health",
    description: "Liveness and dependency checks; no authentication."
  }))
{}


export class MonitoringGroup extends HttpApiGroup.make("monitoring")
  .add(
    HttpApiEndpoint.get("metricsJson", "/monitoring/metrics", {
      success: Schema.Record(Schema.String, Schema.Unknown)
    }),
    HttpApiEndpoint.get("metricsPrometheus", "/metrics", {
      success: Schema.String.pipe(HttpApiSchema.asText({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
    }),
    HttpApiEndpoint.get("webhookLogs", "/monitoring/webhook-logs", {
      query: {
        status: Schema.optional(EventStatus),
        owner_id: Schema.optional(OwnerId),
        worker_app_id: Schema.optional(WorkerAppId),
        since: Schema.optional(Timestamp),
        limit: Schema.optional(IntFromString("limit", 1, MAX_PAGE_SIZE)),
        cursor: Schema.optional(Schema.String)
      },
      success: WebhookLogPage,
      error: [InvalidFilterBody, UnavailableBody]
    }),
    HttpApiEndpoint.get("webhookLog", "/monitoring/webhook-logs/:event_id", {
      params: { event_id: EventId },
      success: WebhookLogEvent,
      error: [EventNotFoundBody, UnavailableBody]
    }),
    HttpApiEndpoint.get("queues", "/monitoring/queues", {
      query: {
        limit: Schema.optional(IntFromString("limit", 1, MAX_PAGE_SIZE)),
        offset: Schema.optional(IntFromString("offset", 0, Number.MAX_SAFE_INTEGER))
      },
      success: QueuesReport,
      error: UnavailableBody
    }),
    HttpApiEndpoint.post("replayOne", "/monitoring/webhook-logs/:event_id/replay", {
      params: { event_id: EventId },
      success: ReplayResult,
      error: [EventNotFoundBody, UnavailableBody]
    }),
    HttpApiEndpoint.post("replay", "/monitoring/replay", {
      payload: ReplayFilter,
      success: ReplayResult,
      error: [InvalidFilterBody, UnavailableBody]
    })
  )
  .pipe(adminGroup("Monitoring", "Metrics, webhook logs, queue depths and replay."))
{}

export class Api extends HttpApi.make("chatico-mapper")
  .add(WorkerAppsGroup)
  .add(HealthGroup)
  .add(MonitoringGroup)
  .middleware(RequestValidation)
  // Report every problem at once, and refuse unknown fields and query parameters instead of ignoring them.
  .annotate(HttpApi.ParamsParseOptions, { errors: "all" })
  .annotate(HttpApi.QueryParseOptions, { errors: "all", onExcessProperty: "error" })
  .annotate(HttpApi.PayloadParseOptions, { errors: "all", onExcessProperty: "error" })
  .annotateMerge(OpenApi.annotations({
    title: "chatico-mapper",
    version: "0.1.0",
    description: "Instagram webhook ingestion router: the webhook, the admin and the monitoring API.",
    transform: (spec) => polishOpenApi(addWebhookPaths(spec))
  }))
{}
