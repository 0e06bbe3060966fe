import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as OtelTracer from "@effect/opentelemetry/OtelTracer"
import * as Resource from "@effect/opentelemetry/Resource"
import { OTLPTraceExporter as OtlpGrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc"
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Effect, Layer, Option, Tracer } from "effect"
import { HttpMiddleware } from "effect/http"
import { TracingOn } from "../services/TraceContext.ts"
import { isWebhookRequest } from "../http/WebhookPath.ts"
import * as OtlpSpans from "./OtlpSpans.ts"
import type { SamplerName } from "./Sampler.ts"
import type { BatchLimits, Transport } from "./SpanBatcher.ts"

export const SERVICE_NAME = "chatico-mapper"
export const SERVICE_VERSION = "0.1.0"

// The exporters read the rest of the standard OTEL_EXPORTER_OTLP_* variables
// (endpoint, headers, timeout) themselves; the sampler comes from OTEL_TRACES_SAMPLER.
export const exporterFor = (protocol: "grpc" | "http/json"): SpanExporter =>
  protocol === "grpc" ? new OtlpGrpcExporter() : new OtlpJsonExporter()

/**
 * Effect spans as OpenTelemetry spans, without `OtelTracer.layer`'s costly re-entry of the
 * OpenTelemetry context on every effect step: no auto-instrumentation here would read it.
 */
const EffectSpansToOtel = Layer.effect(
  Tracer.Tracer,
  Effect.map(OtelTracer.make, (otel) => Tracer.make({ span: (options) => otel.span(options) }))
)

/**
 * The spans' resource: OTEL_RESOURCE_ATTRIBUTES, the version, and the service name: OTEL_SERVICE_NAME
 * when set, else chatico-mapper (the attributes given here win over the environment's).
 */
const resource = Layer.unwrap(Effect.map(
  Config.String("OTEL_SERVICE_NAME").pipe(Config.option, Effect.orDie),
  (name) =>
    Resource.layerFromEnv(Resource.configToAttributes({
      serviceName: Option.getOrElse(Option.filter(name, (n) => n.trim() !== ""), () => SERVICE_NAME),
      serviceVersion: SERVICE_VERSION
    }))
))

/** What every trace path sets: tracing is on, and the webhook routes make their own server span. */
const TracedRequests = Layer.mergeAll(
  Layer.succeed(TracingOn, true),
  Layer.succeed(HttpMiddleware.TracerDisabledWhen, isWebhookRequest)
)

/** Tracing from a span processor; the webhook routes make their own server span (`streams/Accept.ts`). */
export const tracingWith = (processor: SpanProcessor) =>
  Layer.mergeAll(
    EffectSpansToOtel.pipe(
      Layer.provide(OtelTracer.layerTracer),
      Layer.provide(NodeSdk.layerTracerProvider(processor)),
      Layer.provide(resource)
    ),
    TracedRequests
  )

/**
 * The default trace path: effect's spans encoded as they end (`OtlpSpans.ts`) and sent by the SDK's
 * OTLP/HTTP transport; tests replace it with `send`.
 */
export const tracingToOtlp = (options: {
  readonly sampler: SamplerName
  readonly ratio: number
  readonly send?: Transport | undefined
  readonly limits?: Partial<BatchLimits> | undefined
}) =>
  Layer.mergeAll(
    Layer.unwrap(Effect.gen(function*() {
      const otel = yield* Resource.Resource
      return OtlpSpans.layer({ ...options, resource: otel.attributes })
    })).pipe(Layer.provide(resource)),
    TracedRequests
  )

/** A batch span processor over the SDK's OTLP exporter for `protocol`. */
export const sdkProcessor = (protocol: "grpc" | "http/json"): SpanProcessor => new BatchSpanProcessor(exporterFor(protocol))
