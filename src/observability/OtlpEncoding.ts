import { Cause, Exit, Inspectable, Option, Tracer } from "effect"
import { ProtoWriter, varintSize } from "./ProtoWriter.ts"

/**
 * Effect's ended spans as OTLP protobuf, byte for byte what the SDK's `ProtobufTraceSerializer`
 * writes (test/observability/OtlpSpans.test.ts compares them).
 */

/** An effect span attribute as an OpenTelemetry attribute value, as `@effect/opentelemetry` converts it. */
export const attributeValue = (value: unknown): string | number | boolean | ReadonlyArray<string | number | boolean> => {
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value
  if (typeof value === "bigint") return value.toString()
  if (Array.isArray(value)) {
    const type = typeof value[0]
    if ((value.length === 0 || type === "string" || type === "number" || type === "boolean") && value.every((item) => typeof item === type)) {
      return value as ReadonlyArray<string | number | boolean>
    }
  }
  return Inspectable.toStringUnknown(value)
}

const writeAnyValue = (w: ProtoWriter, value: string | number | boolean | ReadonlyArray<string | number | boolean>) => {
  if (typeof value === "string") {
    w.tag(1, 2)
    w.string(value)
  } else if (typeof value === "boolean") {
    w.tag(2, 0)
    w.uint32(value ? 1 : 0)
  } else if (typeof value === "number") {
    if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
      w.tag(3, 0)
      w.int64(value)
    } else {
      w.tag(4, 1)
      w.double(value)
    }
  } else {
    w.tag(5, 2)
    const array = w.begin()
    for (const item of value) {
      w.tag(1, 2)
      const at = w.begin()
      writeAnyValue(w, item)
      w.end(at)
    }
    w.end(array)
  }
}

const writeKeyValue = (w: ProtoWriter, field: number, key: string, value: unknown) => {
  w.tag(field, 2)
  const at = w.begin()
  w.tag(1, 2)
  w.string(key)
  w.tag(2, 2)
  const valueAt = w.begin()
  writeAnyValue(w, attributeValue(value))
  w.end(valueAt)
  w.end(at)
}

const writeRecord = (w: ProtoWriter, field: number, record: Readonly<Record<string, unknown>>) => {
  for (const key in record) {
    if (Object.hasOwn(record, key)) writeKeyValue(w, field, key, record[key])
  }
}

/** OTLP's span kinds: SPAN_KIND_INTERNAL = 1 … SPAN_KIND_CONSUMER = 5. */
const KIND: Record<Tracer.SpanKind, number> = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 }
const STATUS_OK = 1
const STATUS_ERROR = 2
/** Span flags: the W3C trace flags, plus "has is_remote", plus "is_remote" for a parent from another process. */
const FLAG_HAS_IS_REMOTE = 0x100
const FLAG_IS_REMOTE = 0x200

const spanFlags = (sampled: boolean, remote: boolean) => (sampled ? 1 : 0) | FLAG_HAS_IS_REMOTE | (remote ? FLAG_IS_REMOTE : 0)

interface Outcome {
  readonly code: number
  readonly message: string | undefined
  readonly errors: ReadonlyArray<Error>
  readonly interrupted: boolean
}

const SUCCEEDED: Outcome = { code: STATUS_OK, message: undefined, errors: [], interrupted: false }

/** What the span records when it ends, as `@effect/opentelemetry` records an exit. */
const exitOutcome = (exit: Exit.Exit<unknown, unknown>): Outcome => {
  if (Exit.isSuccess(exit)) return SUCCEEDED
  if (Cause.hasInterruptsOnly(exit.cause)) return { code: 0, message: undefined, errors: [], interrupted: true }
  const errors = Cause.prettyErrors(exit.cause, { includeCauseInStack: true })
  if (errors.length === 0) return SUCCEEDED
  return { code: STATUS_ERROR, message: errors[0]!.message, errors, interrupted: false }
}

const writeEvent = (w: ProtoWriter, name: string, time: bigint, attributes: Readonly<Record<string, unknown>>) => {
  w.tag(11, 2)
  const at = w.begin()
  w.tag(1, 1)
  w.fixed64(time)
  w.tag(2, 2)
  w.string(name)
  writeRecord(w, 3, attributes)
  w.tag(4, 0)
  w.uint32(0)
  w.end(at)
}

/** The `exception` event of an error, with the attributes the SDK's `recordException` gives it. */
const exceptionAttributes = (error: Error) => {
  const attributes: Record<string, string> = {}
  const code = (error as { readonly code?: unknown }).code
  if (code) attributes["exception.type"] = String(code)
  else if (error.name) attributes["exception.type"] = error.name
  if (error.message) attributes["exception.message"] = error.message
  if (error.stack) attributes["exception.stacktrace"] = error.stack
  return attributes
}

/** Writes one ended span as a `ScopeSpans.spans` entry (field 2). */
export const writeSpan = (w: ProtoWriter, span: Tracer.Span) => {
  if (span.status._tag !== "Ended") return
  const { endTime, exit, startTime } = span.status
  const outcome = exitOutcome(exit)
  const parent = Option.getOrUndefined(span.parent)
  w.tag(2, 2)
  const at = w.begin()
  w.tag(1, 2)
  w.hexId(span.traceId)
  w.tag(2, 2)
  w.hexId(span.spanId)
  if (parent !== undefined) {
    w.tag(4, 2)
    w.hexId(parent.spanId)
  }
  w.tag(5, 2)
  w.string(span.name)
  w.tag(6, 0)
  w.uint32(KIND[span.kind])
  w.tag(7, 1)
  w.fixed64(startTime)
  w.tag(8, 1)
  w.fixed64(endTime)
  for (const [key, value] of span.attributes) writeKeyValue(w, 9, key, value)
  if (outcome.interrupted) writeKeyValue(w, 9, "effect.fiber.interrupted", true)
  w.tag(10, 0)
  w.uint32(0)
  if (span instanceof Tracer.NativeSpan && span._events !== undefined) {
    for (const [name, time, attributes] of span._events) writeEvent(w, name, time, attributes)
  }
  for (const error of outcome.errors) writeEvent(w, "exception", endTime, exceptionAttributes(error))
  w.tag(12, 0)
  w.uint32(0)
  for (const link of span.links) {
    w.tag(13, 2)
    const linkAt = w.begin()
    w.tag(1, 2)
    w.hexId(link.span.traceId)
    w.tag(2, 2)
    w.hexId(link.span.spanId)
    writeRecord(w, 4, link.attributes)
    w.tag(5, 0)
    w.uint32(0)
    w.tag(6, 5)
    w.fixed32(spanFlags(link.span.sampled, link.span._tag === "ExternalSpan"))
    w.end(linkAt)
  }
  w.tag(14, 0)
  w.uint32(0)
  w.tag(15, 2)
  const statusAt = w.begin()
  if (outcome.message) {
    w.tag(2, 2)
    w.string(outcome.message)
  }
  w.tag(3, 0)
  w.uint32(outcome.code)
  w.end(statusAt)
  w.tag(16, 5)
  w.fixed32(spanFlags(span.sampled, parent?._tag === "ExternalSpan"))
  w.end(at)
}

export interface Scope {
  readonly name: string
  readonly version?: string | undefined
}

/**
 * The envelope around encoded spans: `ExportTraceServiceRequest { resource_spans:
 * ResourceSpans { resource, scope_spans: ScopeSpans { scope, spans… } } }`.
 */
export const makeEnvelope = (resource: Readonly<Record<string, unknown>>, scope: Scope) => {
  const w = new ProtoWriter(1024)
  w.tag(1, 2)
  const resourceAt = w.begin()
  writeRecord(w, 1, resource)
  w.tag(2, 0)
  w.uint32(0)
  w.end(resourceAt)
  const resourceBytes = Buffer.from(w.bytes())
  w.reset()
  w.tag(1, 2)
  const scopeAt = w.begin()
  w.tag(1, 2)
  w.string(scope.name)
  if (scope.version) {
    w.tag(2, 2)
    w.string(scope.version)
  }
  w.end(scopeAt)
  const scopeBytes = Buffer.from(w.bytes())
  return (spans: Uint8Array): Uint8Array => {
    const scopeSpans = scopeBytes.length + spans.length
    const resourceSpans = resourceBytes.length + 1 + varintSize(scopeSpans) + scopeSpans
    const out = new ProtoWriter(1 + varintSize(resourceSpans) + resourceSpans)
    out.tag(1, 2)
    out.uint32(resourceSpans)
    out.raw(resourceBytes)
    out.tag(2, 2)
    out.uint32(scopeSpans)
    out.raw(scopeBytes)
    out.raw(spans)
    return out.bytes()
  }
}
