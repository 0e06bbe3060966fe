import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer"
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from "@opentelemetry/otlp-exporter-base/node-http"
import { Config, Effect, type Exit, Layer, Option, Schema, Tracer } from "effect"
import { makeEnvelope, type Scope } from "./OtlpEncoding.ts"
import { makeSampler, type SamplerName } from "./Sampler.ts"
import { type BatchLimits, SpanBatcher, type Transport } from "./SpanBatcher.ts"

// The default trace path (OTLP over HTTP/protobuf): effect's own spans, encoded the moment they end
// (`OtlpEncoding.ts`), batched (`SpanBatcher.ts`) and sent by the SDK's OTLP/HTTP transport, which
// reads the OTEL_EXPORTER_OTLP_* endpoint, headers, timeout and compression. Why: README, "Tracing cost".

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
 * The default trace path's tracer and batcher. Dropped and failed exports are logged at most once
 * a minute; the last batch is sent on shutdown.
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
