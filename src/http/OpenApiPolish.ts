/**
 * What the generated document lacks for a reader and Swagger UI's "Try it out": operation summaries,
 * an example for every body that succeeds as given, schema names without the `Encoded` suffix.
 */

const summaries: Record<string, string> = {
  "workerApps.create": "Create a worker app (its queue and dead-letter queue are declared)",
  "workerApps.list": "List worker apps, filtered by is_active or owner_id",
  "workerApps.get": "Get one worker app",
  "workerApps.update": "Change any subset of a worker app's fields",
  "workerApps.remove": "Delete a worker app (its queue is kept; later events are unroutable)",
  "workerApps.toggle": "Flip a worker app's is_active",
  "health.health": "Dependency checks: 200 when every check passes, 503 naming the failing ones",
  "monitoring.metricsJson": "Counts and timings as JSON",
  "monitoring.metricsPrometheus": "The same metrics in Prometheus text format, with the process metrics",
  "monitoring.webhookLogs": "Journaled events, newest first, by status, owner, worker app or time",
  "monitoring.webhookLog": "One journaled event with its attempts, last error and delivery time",
  "monitoring.queues": "Message and consumer counts of every worker app's queue and dead-letter queue",
  "monitoring.replayOne": "Deliver one event again",
  "monitoring.replay": "Deliver again every event matching a filter"
}

const time = "2026-11-27T12:00:00.000Z"
const eventId = "9b3c2f0a4d1e6b7c8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b"
const workerApp = {
  id: "3f0c2a4e-8d7b-4c1e-9a55-2b6f1d0e7c91",
  name: "acme-dm-bot",
  owner_id: "17841400000000000",
  queue_name: "acme.instagram",
  is_active: true,
  description: "Acme's Instagram DM assistant",
  created_at: time,
  updated_at: time
}
const logEntry = {
  event_id: eventId,
  received_at: time,
  status: "routed",
  object: "instagram",
  field: "comments",
  entry_id: "17841400000000000",
  media_id: "18100000000000000",
  owner_id: "17841400000000000",
  worker_app_id: workerApp.id,
  attempts: 1,
  last_error: null,
  delivered_at: "2026-11-27T12:00:00.012Z",
  value: { id: "17900000000000001", text: "Love it!", media: { id: "18100000000000000" } },
  routing_note: null
}
const check = { ok: true, latency_ms: 1.2 }

/** One valid example per component schema, by its name in the document. */
const examples: Record<string, unknown> = {
  WorkerAppCreate: {
    name: "acme-dm-bot",
    owner_id: "17841400000000000",
    queue_name: "acme.instagram",
    description: "Acme's Instagram DM assistant",
    is_active: true
  },
  WorkerAppUpdate: { description: "Acme's Instagram DM assistant, v2" },
  WorkerApp: workerApp,
  WorkerAppList: { items: [workerApp], total: 1 },
  WebhookLogEntry: logEntry,
  WebhookLogEvent: { ...logEntry, entry_time: 1764244800, duplicates: 0, trace_id: null },
  HealthReport: { status: "ok", checks: { database: check, rabbitmq: { ok: true } } },
  HealthDegraded: {
    status: "degraded",
    failing: ["rabbitmq"],
    checks: { database: check, rabbitmq: { ok: false, error: "connect ECONNREFUSED 127.0.0.1:5672" } }
  },
  Unauthorized: { detail: "missing or invalid bearer token" },
  WorkerAppNotFound: { detail: `no worker app ${workerApp.id}` },
  EventNotFound: { detail: `no event ${eventId}` },
  Conflict: { detail: "queue_name is already taken", field: "queue_name" },
  ServiceUnavailable: { detail: "the database is unavailable" },
  HTTPValidationError: { detail: [{ loc: ["body", "owner_id"], msg: "Field required", type: "missing" }] },
  InvalidFilter: { detail: [{ loc: ["query", "cursor"], msg: "cursor is not one this service issued", type: "value_error" }] }
}

/** Inline (un-named) request bodies, by operation. */
const requestExamples: Record<string, unknown> = {
  "monitoring.replay": { status: "dead_lettered", since: "2026-11-27T00:00:00Z" }
}
const responseExamples: Record<string, Record<string, unknown>> = {
  "monitoring.webhookLogs": { "200": { items: [logEntry], next_cursor: null } },
  "monitoring.replayOne": { "200": { queued: 1, more: false } },
  "monitoring.metricsJson": {
    "200": {
      chatico_webhooks_total: [{ attributes: { result: "accepted" }, count: 1200 }],
      http_requests_total: [{ attributes: { route: "/webhook", status: "200" }, count: 1200 }]
    }
  },
  "monitoring.replay": { "200": { queued: 42, more: false } },
  "monitoring.queues": {
    "200": {
      items: [{
        worker_app_id: workerApp.id,
        name: workerApp.name,
        owner_id: workerApp.owner_id,
        is_active: true,
        queue_name: workerApp.queue_name,
        queue: { messages: 0, consumers: 2 },
        dead_letter_queue: { messages: 0, consumers: 0 }
      }],
      unroutable: { messages: 3, consumers: 0 },
      broker_error: null
    }
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const ENCODED = /Encoded$/

/** `#/components/schemas/XEncoded` → `#/components/schemas/X`, everywhere in the document. */
const renameRefs = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(renameRefs)
  if (!isRecord(value)) return value
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [
    key,
    key === "$ref" && typeof inner === "string" ? inner.replace(ENCODED, "") : renameRefs(inner)
  ]))
}

const refName = (schema: unknown) =>
  isRecord(schema) && typeof schema.$ref === "string" ? schema.$ref.replace("#/components/schemas/", "") : undefined

/** Sets `example` on a JSON content whose schema has one (by component name, or given). */
const withExample = (content: unknown, given: unknown) => {
  if (!isRecord(content) || !isRecord(content["application/json"])) return content
  const media = content["application/json"]
  // Of several schemas (e.g. two kinds of 422), the first named one with an example speaks for them.
  const candidates = isRecord(media.schema) && Array.isArray(media.schema.anyOf) ? media.schema.anyOf : [media.schema]
  const name = candidates.map(refName).find((n) => n !== undefined && examples[n] !== undefined)
  const example = given ?? (name === undefined ? undefined : examples[name])
  return example === undefined ? content : { ...content, "application/json": { ...media, example } }
}

export const polishOpenApi = (spec: Record<string, unknown>): Record<string, unknown> => {
  const renamed = renameRefs(spec)
  if (!isRecord(renamed)) return spec
  const components = isRecord(renamed.components) ? renamed.components : {}
  const schemas = isRecord(components.schemas) ? components.schemas : {}
  const namedSchemas = Object.fromEntries(Object.entries(schemas).map(([name, schema]) => {
    const clean = name.replace(ENCODED, "")
    const example = examples[clean]
    return [clean, isRecord(schema) && example !== undefined ? { ...schema, examples: [example] } : schema]
  }))
  const paths = isRecord(renamed.paths) ? renamed.paths : {}
  const polishedPaths = Object.fromEntries(Object.entries(paths).map(([path, item]) => {
    if (!isRecord(item)) return [path, item]
    return [path, Object.fromEntries(Object.entries(item).map(([method, op]) => {
      if (!isRecord(op)) return [method, op]
      const id = typeof op.operationId === "string" ? op.operationId : ""
      const requestBody = isRecord(op.requestBody)
        ? { ...op.requestBody, content: withExample(op.requestBody.content, requestExamples[id]) }
        : op.requestBody
      const responses = isRecord(op.responses)
        ? Object.fromEntries(Object.entries(op.responses).map(([status, response]) =>
          [status, isRecord(response) ? { ...response, content: withExample(response.content, responseExamples[id]?.[status]) } : response]
        ))
        : op.responses
      return [method, {
        ...op,
        ...(summaries[id] === undefined || typeof op.summary === "string" ? {} : { summary: summaries[id] }),
        ...(op.requestBody === undefined ? {} : { requestBody }),
        ...(op.responses === undefined ? {} : { responses })
      }]
    }))]
  }))
  return { ...renamed, paths: polishedPaths, components: { ...components, schemas: namedSchemas } }
}
