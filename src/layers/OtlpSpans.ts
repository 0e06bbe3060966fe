import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer"
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from "@opentelemetry/otlp-exporter-base/node-http"
import { Cause, Config, Effect, Exit, Inspectable, Layer, Option, Schema, Tracer } from "effect"

/**
 * The default trace path (OTLP over HTTP/protobuf): effect's own spans,
 * encoded to OTLP protobuf the moment they end and sent in batches by the
 * OpenTelemetry SDK's OTLP/HTTP transport (`@opentelemetry/otlp-exporter-base`,
 * which reads the `OTEL_EXPORTER_OTLP_*` endpoint, headers, timeout and
 * compression). Compared with `@effect/opentelemetry`'s tracer over the SDK's
 * `BatchSpanProcessor` and serializer, no second span object, OpenTelemetry
 * context or attribute copy is made per span, and a finished span is bytes at
 * once instead of an object kept until its batch is serialized: at webhook
 * rates that was most of the cost of tracing (`npm run bench -- --compare-tracing`).
 * The bytes are those of the SDK's `ProtobufTraceSerializer`
 * (test/observability/OtlpSpans.test.ts compares them).
 */

// ---------------------------------------------------------------------------------------------
// Protobuf writing

const varintSize = (value: number) => (value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5)

const hexValue = (code: number) =>
  code >= 48 && code <= 57 ? code - 48 : code >= 97 && code <= 102 ? code - 87 : code >= 65 && code <= 70 ? code - 55 : 0

/** A growable protobuf writer; a length-delimited field reserves one length byte and shifts when it needs more. */
export class ProtoWriter {
  buffer: Buffer
  pos = 0
  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(size)
  }
  reset() {
    this.pos = 0
  }
  bytes() {
    return this.buffer.subarray(0, this.pos)
  }
  private ensure(size: number) {
    if (this.pos + size <= this.buffer.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.pos + size))
    this.buffer.copy(next, 0, 0, this.pos)
    this.buffer = next
  }
  tag(field: number, wireType: number) {
    this.uint32((field << 3) | wireType)
  }
  uint32(value: number) {
    this.ensure(5)
    let v = value >>> 0
    while (v > 0x7f) {
      this.buffer[this.pos++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.buffer[this.pos++] = v
  }
  /** An int64 varint from a JS integer (two's complement for negatives), as the SDK writes `int_value`. */
  int64(value: number) {
    if (value >= 0 && value <= 0xffffffff) return this.uint32(value)
    let low: number
    let high: number
    const abs = Math.abs(value)
    low = abs >>> 0
    high = (abs / 0x100000000) >>> 0
    if (value < 0) {
      low = ~low >>> 0
      high = ~high >>> 0
      low = (low + 1) >>> 0
      if (low === 0) high = (high + 1) >>> 0
    }
    this.ensure(10)
    while (high > 0 || low > 0x7f) {
      this.buffer[this.pos++] = (low & 0x7f) | 0x80
      low = ((low >>> 7) | (high << 25)) >>> 0
      high >>>= 7
    }
    this.buffer[this.pos++] = low & 0x7f
  }
  fixed32(value: number) {
    this.ensure(4)
    this.pos = this.buffer.writeUInt32LE(value >>> 0, this.pos)
  }
  fixed64(value: bigint) {
    this.ensure(8)
    this.pos = this.buffer.writeBigUInt64LE(BigInt.asUintN(64, value), this.pos)
  }
  double(value: number) {
    this.ensure(8)
    this.pos = this.buffer.writeDoubleLE(value, this.pos)
  }
  /** Starts a length-delimited value; `end` with what this returns. */
  begin() {
    this.ensure(1)
    return this.pos++
  }
  end(at: number) {
    const length = this.pos - at - 1
    if (length < 0x80) {
      this.buffer[at] = length
      return
    }
    const size = varintSize(length)
    this.ensure(size - 1)
    this.buffer.copyWithin(at + size, at + 1, this.pos)
    this.pos += size - 1
    let v = length
    let i = at
    while (v > 0x7f) {
      this.buffer[i++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.buffer[i] = v
  }
  /** UTF-8; short ASCII strings (names, keys, ids) are copied here, cheaper than a call into `Buffer#write`. */
  string(value: string) {
    const length = value.length
    this.ensure(4 + length * 3)
    if (length < 0x80) {
      const buffer = this.buffer
      const start = this.pos + 1
      let i = 0
      for (; i < length; i++) {
        const code = value.charCodeAt(i)
        if (code >= 0x80) break
        buffer[start + i] = code
      }
      if (i === length) {
        buffer[this.pos] = length
        this.pos = start + length
        return
      }
    }
    const at = this.begin()
    this.pos += this.buffer.write(value, this.pos, "utf8")
    this.end(at)
  }
  /** A W3C id (hex) as bytes; a character that is not hex counts as 0. */
  hexId(hex: string) {
    const size = hex.length >>> 1
    this.ensure(1 + size)
    const buffer = this.buffer
    buffer[this.pos++] = size
    for (let i = 0; i < size; i++) {
      buffer[this.pos++] = (hexValue(hex.charCodeAt(2 * i)) << 4) | hexValue(hex.charCodeAt(2 * i + 1))
    }
  }
  raw(bytes: Uint8Array) {
    this.ensure(bytes.length)
    this.buffer.set(bytes, this.pos)
    this.pos += bytes.length
  }
}

// ---------------------------------------------------------------------------------------------
// OTLP messages (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto)

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

// ---------------------------------------------------------------------------------------------
// Sampling (OTEL_TRACES_SAMPLER, as the OpenTelemetry SDKs read it)

export type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio"

export const SAMPLERS: ReadonlyArray<SamplerName> = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio"
]

const INVALID_TRACE_ID = "00000000000000000000000000000000"

/**
 * The SDK's `TraceIdRatioBasedSampler` test: the trace id's 32-bit words
 * xor-ed, below ratio × (2³² − 1) (every valid id at ratio 1, none at 0).
 */
const ratioSampled = (traceId: string, ratio: number) => {
  if (traceId === INVALID_TRACE_ID) return false
  const upperBound = ratio === 1 ? 0x100000000 : Math.floor(ratio * 0xffffffff)
  let accumulation = 0
  for (let i = 0; i < traceId.length / 8; i++) {
    const part = Number.parseInt(traceId.slice(i * 8, i * 8 + 8), 16)
    accumulation = (accumulation ^ part) >>> 0
  }
  return accumulation < upperBound
}

/**
 * A span's sampling decision. `effectSampled` is effect's own: false under an
 * unsampled parent (or below the minimum trace level).
 */
export const makeSampler = (name: SamplerName, ratio: number) => {
  const root = (traceId: string, effectSampled: boolean) => {
    if (name === "always_off" || name === "parentbased_always_off") return false
    if (name === "traceidratio" || name === "parentbased_traceidratio") return effectSampled && ratioSampled(traceId, ratio)
    return effectSampled
  }
  if (name.startsWith("parentbased_")) {
    return (hasParent: boolean, traceId: string, effectSampled: boolean) => hasParent ? effectSampled : root(traceId, effectSampled)
  }
  return (_hasParent: boolean, traceId: string, effectSampled: boolean) => root(traceId, effectSampled)
}

// ---------------------------------------------------------------------------------------------
// The tracer

type SpanOptions = Parameters<Tracer.Tracer["span"]>[0]

type Sample = ReturnType<typeof makeSampler>

/** An effect span, sampled by `sample`, that hands itself to `onEnd` when it ends, if sampled. */
class ExportedSpan extends Tracer.NativeSpan {
  declare sampled: boolean
  private readonly onEnd: (span: Tracer.Span) => void
  constructor(options: SpanOptions, sample: Sample, onEnd: (span: Tracer.Span) => void) {
    super(options)
    this.onEnd = onEnd
    this.sampled = sample(Option.isSome(options.parent), this.traceId, options.sampled)
  }
  override end(endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
    if (this.status._tag === "Ended") return
    super.end(endTime, exit)
    if (this.sampled) this.onEnd(this)
  }
}

/** An effect tracer whose sampled spans go to `onEnd` as they end. */
export const makeTracer = (onEnd: (span: Tracer.Span) => void, sample: Sample) =>
  Tracer.make({ span: (options) => new ExportedSpan(options, sample, onEnd) })

// ---------------------------------------------------------------------------------------------
// Batching and export

/** Batch limits, from the standard OTEL_BSP_* variables (OpenTelemetry's defaults). */
export interface BatchLimits {
  /** Spans encoded and not yet answered by the collector; more are dropped (OTEL_BSP_MAX_QUEUE_SIZE). */
  readonly maxQueueSize: number
  /** Spans per export request (OTEL_BSP_MAX_EXPORT_BATCH_SIZE). */
  readonly maxExportBatchSize: number
  /** Milliseconds a started batch waits for more spans (OTEL_BSP_SCHEDULE_DELAY). */
  readonly scheduledDelayMillis: number
  /** Milliseconds shutdown waits for the last exports (OTEL_BSP_EXPORT_TIMEOUT). */
  readonly exportTimeoutMillis: number
}

export interface ExportCounts {
  exported: number
  dropped: number
  failed: number
}

/** Sends one request's bytes; `done` is told whether the collector took them. */
export type Send = (request: Uint8Array, spans: number, done: (ok: boolean, error?: unknown) => void) => void

export interface Transport {
  readonly send: Send
  readonly shutdown: () => Promise<void>
}

/**
 * Encodes ended spans into the current batch and sends a batch when it is
 * full or its delay has passed. Spans beyond `maxQueueSize` (encoded, not yet
 * answered) are dropped and counted: tracing never holds up the webhooks.
 */
export class SpanBatcher {
  private readonly writer = new ProtoWriter(64 * 1024)
  private batched = 0
  private inFlight = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private readonly pending = new Set<Promise<void>>()
  readonly counts: ExportCounts = { exported: 0, dropped: 0, failed: 0 }
  lastError: unknown = undefined

  private readonly envelope: (spans: Uint8Array) => Uint8Array
  private readonly send: Send
  private readonly limits: BatchLimits
  constructor(envelope: (spans: Uint8Array) => Uint8Array, send: Send, limits: BatchLimits) {
    this.envelope = envelope
    this.send = send
    this.limits = limits
  }

  readonly add = (span: Tracer.Span) => {
    if (this.batched + this.inFlight >= this.limits.maxQueueSize) {
      this.counts.dropped++
      return
    }
    const start = this.writer.pos
    try {
      writeSpan(this.writer, span)
    } catch (error) {
      // A span that cannot be encoded is dropped, never a failure of the request that ended it.
      this.writer.pos = start
      this.counts.dropped++
      this.lastError = error
      return
    }
    this.batched++
    if (this.batched >= this.limits.maxExportBatchSize) this.flush()
    else if (this.timer === undefined) {
      this.timer = setTimeout(this.flush, this.limits.scheduledDelayMillis)
      this.timer.unref()
    }
  }

  readonly flush = () => {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (this.batched === 0) return
    const spans = this.batched
    const request = this.envelope(this.writer.bytes())
    this.writer.reset()
    this.batched = 0
    this.inFlight += spans
    const sent = new Promise<void>((resolve) => {
      this.send(request, spans, (ok, error) => {
        this.inFlight -= spans
        if (ok) this.counts.exported += spans
        else {
          this.counts.failed += spans
          this.lastError = error
        }
        resolve()
      })
    })
    this.pending.add(sent)
    void sent.then(() => this.pending.delete(sent))
  }

  /** Sends what is batched and waits for every export in flight. */
  readonly drain = () => {
    this.flush()
    return Promise.all(this.pending).then(() => undefined)
  }
}

const SCOPE: Scope = { name: "chatico-mapper" }

const bspLimits = Effect.gen(function*() {
  const positive = (name: string, fallback: number) =>
    Config.schema(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), name).pipe(Config.withDefault(fallback))
  const maxQueueSize = yield* positive("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
  const maxExportBatchSize = yield* positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
  return {
    maxQueueSize,
    maxExportBatchSize: Math.min(maxExportBatchSize, maxQueueSize),
    scheduledDelayMillis: yield* positive("OTEL_BSP_SCHEDULE_DELAY", 5000),
    exportTimeoutMillis: yield* positive("OTEL_BSP_EXPORT_TIMEOUT", 30000)
  } satisfies BatchLimits
})

/** Sends requests with the SDK's OTLP/HTTP transport, configured by the OTEL_EXPORTER_OTLP_* variables. */
const otlpHttpSend = (): Transport => {
  const delegate = createOtlpHttpExportDelegate(
    convertLegacyHttpOptions({}, "TRACES", "v1/traces", { "Content-Type": "application/x-protobuf" }),
    {
      serializeRequest: (batch: { readonly request: Uint8Array; readonly spans: number }) => batch.request,
      deserializeResponse: (data: Uint8Array) => ProtobufTraceSerializer.deserializeResponse(data)
    },
    "otlp_http_span_exporter",
    { name: "span", countItems: (batch) => batch.spans },
    undefined
  )
  return {
    send: (request, spans, done) => delegate.export({ request, spans }, (result) => done(result.code === 0, result.error)),
    shutdown: () => delegate.shutdown()
  }
}

/**
 * The effect `Tracer` of the default trace path, with its batcher; the spans'
 * resource is `resource` (service name and version, OTEL_RESOURCE_ATTRIBUTES).
 * Dropped and failed exports are logged, at most once a minute; the last
 * batch is sent on shutdown.
 */
export const layer = (options: {
  readonly resource: Readonly<Record<string, unknown>>
  readonly sampler: SamplerName
  readonly ratio: number
  readonly send?: Transport | undefined
  readonly limits?: Partial<BatchLimits> | undefined
}) =>
  Layer.effect(
    Tracer.Tracer,
    Effect.gen(function*() {
      const limits = { ...(yield* bspLimits.pipe(Effect.orDie)), ...options.limits }
      const transport = options.send ?? otlpHttpSend()
      const batcher = new SpanBatcher(makeEnvelope(options.resource, SCOPE), transport.send, limits)
      let reported = { dropped: 0, failed: 0 }
      const report = Effect.suspend(() => {
        const { dropped, failed } = batcher.counts
        if (dropped === reported.dropped && failed === reported.failed) return Effect.void
        const since = { dropped: dropped - reported.dropped, failed: failed - reported.failed }
        reported = { dropped, failed }
        return Effect.logWarning("spans not exported").pipe(
          Effect.annotateLogs({
            // the queue was full, or (never expected) the span could not be encoded
            dropped: since.dropped,
            failed_export: since.failed,
            last_error: batcher.lastError instanceof Error ? batcher.lastError.message : String(batcher.lastError ?? "")
          })
        )
      })
      yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep("1 minute"), report)))
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => batcher.drain()).pipe(
          Effect.timeout(limits.exportTimeoutMillis),
          Effect.ignore,
          Effect.andThen(report),
          Effect.andThen(Effect.promise(() => transport.shutdown().catch(() => undefined)))
        )
      )
      return makeTracer(batcher.add, makeSampler(options.sampler, options.ratio))
    })
  )
