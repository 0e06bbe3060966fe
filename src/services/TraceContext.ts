import { Context, Effect, type Exit, Tracer } from "effect"

/** True when spans are exported (an OTLP endpoint, or a test's exporter, is configured). */
export const TracingOn = Context.Reference<boolean>("chatico/services/TraceContext/TracingOn", {
  defaultValue: () => false
})

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/**
 * A webhook's trace as the journal and the delivery stages carry it: the request's server span, and
 * the caller's `tracestate` (passed on unchanged), if any.
 */
export interface RequestTrace {
  readonly span: Tracer.AnySpan
  readonly tracestate: string | undefined
}

/** The W3C `traceparent` of a span. */
export const traceparentOf = (span: Tracer.AnySpan) => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/** W3C Trace Context's limit on a `tracestate` header we pass on. */
const TRACESTATE_MAX_LENGTH = 512
const TRACESTATE = /^[\x20-\x7e]+$/

/**
 * A caller's `tracestate`, to be passed on unchanged with its trace (W3C Trace
 * Context): only printable ASCII up to 512 characters, else none.
 */
export const validTracestate = (value: string | undefined): string | undefined => {
  const trimmed = value?.trim()
  return trimmed !== undefined && trimmed.length > 0 && trimmed.length <= TRACESTATE_MAX_LENGTH && TRACESTATE.test(trimmed)
    ? trimmed
    : undefined
}

/** The span a `traceparent` names, to continue its trace in another process or after a restart. */
const spanFromTraceparent = (traceparent: string | null): Tracer.ExternalSpan | undefined => {
  const match = traceparent === null ? null : TRACEPARENT.exec(traceparent)
  if (match === null) return undefined
  return Tracer.externalSpan({
    traceId: match[1]!,
    spanId: match[2]!,
    sampled: (Number.parseInt(match[3]!, 16) & 1) === 1
  })
}

/** The W3C headers that carry `span`'s context on, with the caller's `tracestate` if there is one. */
export const propagationHeaders = (span: Tracer.AnySpan, tracestate: string | undefined): Record<string, string> => {
  const traceparent = traceparentOf(span)
  return tracestate === undefined ? { traceparent } : { traceparent, tracestate }
}

/**
 * The journal's `trace_context` for a request's events: its traceparent (and
 * tracestate), so that delivery after a restart continues the same trace.
 */
export const journalTraceContext = (trace: RequestTrace): string => {
  const traceparent = traceparentOf(trace.span)
  return JSON.stringify(trace.tracestate === undefined ? { traceparent } : { traceparent, tracestate: trace.tracestate })
}

/** The trace a journal row's `trace_context` names (as JSON text or as parsed by the driver), if any. */
export const traceFromJournal = (stored: unknown): RequestTrace | undefined => {
  const parsed: unknown = typeof stored === "string" ? JSON.parse(stored) : stored
  if (typeof parsed !== "object" || parsed === null || !("traceparent" in parsed) || typeof parsed.traceparent !== "string") {
    return undefined
  }
  const span = spanFromTraceparent(parsed.traceparent)
  if (span === undefined) return undefined
  return { span, tracestate: "tracestate" in parsed && typeof parsed.tracestate === "string" ? parsed.tracestate : undefined }
}

/**
 * `Effect.useSpan` for the hot path: no stack frame, `spanExit` decides the span's exit (an HTTP answer
 * can be an error of the span), and the fiber's context is left alone (`use` passes the span on).
 */
export const withOwnSpan = <A, E, R>(
  name: string,
  options: Tracer.SpanOptionsNoTrace,
  use: (span: Tracer.Span) => Effect.Effect<A, E, R>,
  spanExit: (exit: Exit.Exit<A, E>, span: Tracer.Span) => Exit.Exit<unknown, unknown> = (exit) => exit
): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.makeSpan(name, options), (span) =>
    use(span).pipe(
      Effect.onExit((exit) =>
        Effect.clockWith((clock) => Effect.sync(() => span.end(clock.currentTimeNanosUnsafe(), spanExit(exit, span))))
      )
    ))

/**
 * `effect` with `span` current, so its log lines carry the span's ids and a Graph API call is its child;
 * only on the paths that need it, since changing the context costs something on every event.
 */
export const underSpan = <A, E, R>(effect: Effect.Effect<A, E, R>, span: Tracer.AnySpan | undefined): Effect.Effect<A, E, R> =>
  span === undefined ? effect : Effect.provideService(effect, Tracer.ParentSpan, span)
