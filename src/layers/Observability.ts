import { Config, Effect, Layer, Option, Schema } from "effect"
import { HttpMiddleware } from "effect/http"
import { SAMPLERS } from "../observability/Sampler.ts"

/** No tracing: not even the HTTP server's span per request is made (it would go nowhere). */
export const TracingOff = Layer.succeed(HttpMiddleware.TracerDisabledWhen, () => true)

/**
 * Tracing from the standard `OTEL_*` variables, none without an OTLP endpoint. It never blocks or
 * fails start-up: the exporter connects lazily and drops spans it cannot send.
 */
export const ObservabilityLive = Layer.unwrap(Effect.gen(function*() {
  const endpoint = yield* Config.String("OTEL_EXPORTER_OTLP_ENDPOINT").pipe(Config.option)
  const tracesEndpoint = yield* Config.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").pipe(Config.option)
  const disabled = yield* Config.String("OTEL_SDK_DISABLED").pipe(Config.withDefault("false"))
  if (disabled === "true" || (Option.isNone(endpoint) && Option.isNone(tracesEndpoint))) return TracingOff
  const protocols = ["http/protobuf", "http/json", "grpc"] as const
  const tracesProtocol = yield* Config.Literals(protocols, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").pipe(Config.option)
  const protocol = Option.isSome(tracesProtocol)
    ? tracesProtocol.value
    : yield* Config.Literals(protocols, "OTEL_EXPORTER_OTLP_PROTOCOL").pipe(Config.withDefault("http/protobuf" as const))
  const sampler = yield* Config.Literals(SAMPLERS, "OTEL_TRACES_SAMPLER").pipe(
    Config.withDefault("parentbased_always_on" as const)
  )
  const ratio = yield* Config.schema(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })), "OTEL_TRACES_SAMPLER_ARG").pipe(
    Config.withDefault(1)
  )
  yield* Effect.logInfo("tracing on").pipe(Effect.annotateLogs({ protocol, sampler }))
  // Loaded only when tracing is on: the OpenTelemetry packages take tens of MB of memory.
  const tracing = yield* Effect.promise(() => import("../observability/TracingLayers.ts"))
  if (protocol === "http/protobuf") return tracing.tracingToOtlp({ sampler, ratio })
  return tracing.tracingWith(tracing.sdkProcessor(protocol))
}).pipe(Effect.orDie))
