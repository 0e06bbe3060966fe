import { Context, Effect, Formatter, Layer, Logger, References, Tracer } from "effect"
import { AppConfig } from "../services/AppConfig.ts"

/**
 * One JSON object per line on stdout, with the trace and span ids of the
 * current span when there is one, so a log line leads to its trace.
 */
export const jsonLogger = Logger.make((options) => {
  const line: Record<string, unknown> = { ...Logger.formatStructured.log(options) }
  const span = Context.getOrUndefined(options.fiber.context, Tracer.ParentSpan)
  if (span !== undefined) {
    line.trace_id = span.traceId
    line.span_id = span.spanId
  }
  return Formatter.formatJson(line)
}).pipe(Logger.withConsoleLog)

/** Logs at the level `LOG_LEVEL` asks for. */
export const LoggingLive = Layer.unwrap(Effect.gen(function*() {
  const { logLevel } = yield* AppConfig
  return Layer.mergeAll(
    Logger.layer([jsonLogger]),
    Layer.succeed(References.MinimumLogLevel, logLevel)
  )
}))

/** Before the configuration is read (or when it is missing), logs are JSON too. */
export const BootLogging = Logger.layer([jsonLogger])
