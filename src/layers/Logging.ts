import { Effect, Layer, Logger, References } from "effect"
import { AppConfig } from "./Config.ts"

/** One JSON line per log entry on stdout, at the level `LOG_LEVEL` asks for. */
export const LoggingLive = Layer.unwrap(Effect.gen(function*() {
  const { logLevel } = yield* AppConfig
  return Layer.mergeAll(
    Logger.layer([Logger.consoleJson]),
    Layer.succeed(References.MinimumLogLevel, logLevel)
  )
}))

/** Before the configuration is read (or when it is missing), logs are JSON too. */
export const BootLogging = Logger.layer([Logger.consoleJson])
