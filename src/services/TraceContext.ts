import { Context, Effect, type Exit, Tracer } from "effect"

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

/**
 * Runs `use` in a new span that it is handed, like `Effect.withSpan` but for
 * the hot path: no stack frame is recorded, and the span is the parent of
 * what `use` starts. `spanExit` turns the effect's exit into the span's (an
 * HTTP answer can be a success of the effect and an error of the span).
 */
export const inSpan = <A, E, R>(
  name: string,
  options: Tracer.SpanOptionsNoTrace,
  use: (span: Tracer.Span) => Effect.Effect<A, E, R>,
  spanExit: (exit: Exit.Exit<A, E>, span: Tracer.Span) => Exit.Exit<unknown, unknown> = (exit) => exit
): Effect.Effect<A, E, Exclude<R, Tracer.ParentSpan>> =>
  Effect.flatMap(Effect.makeSpan(name, options), (span) =>
    use(span).pipe(
      Effect.provideService(Tracer.ParentSpan, span),
      Effect.onExit((exit) =>
        Effect.clockWith((clock) => Effect.sync(() => span.end(clock.currentTimeNanosUnsafe(), spanExit(exit, span))))
      )
    ))
