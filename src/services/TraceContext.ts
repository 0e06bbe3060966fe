import { Context, Effect, Option, Tracer } from "effect"

/** True when spans are exported (an OTLP endpoint, or a test's exporter, is configured). */
export const TracingOn = Context.Reference<boolean>("chatico/services/TraceContext/TracingOn", {
  defaultValue: () => false
})

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The W3C `traceparent` of a span. */
export const traceparentOf = (span: Tracer.AnySpan) => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/** The span a `traceparent` names, to continue its trace in another process or after a restart. */
export const spanFromTraceparent = (traceparent: string | null): Tracer.ExternalSpan | undefined => {
  const match = traceparent === null ? null : TRACEPARENT.exec(traceparent)
  if (match === null) return undefined
  return Tracer.externalSpan({
    traceId: match[1]!,
    spanId: match[2]!,
    sampled: (Number.parseInt(match[3]!, 16) & 1) === 1
  })
}

/** The current span's `traceparent` when tracing is on, else null. */
export const currentTraceparent = Effect.gen(function*() {
  if (!(yield* TracingOn)) return null
  const span = yield* Effect.option(Effect.currentParentSpan)
  return Option.match(span, { onNone: () => null, onSome: traceparentOf })
})
