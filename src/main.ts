import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import * as Runtime from "effect/Runtime"
import { AppLive } from "./layers/App.ts"
import { MissingConfig } from "./layers/Config.ts"
import { BootLogging } from "./layers/Logging.ts"

// SIGTERM/SIGINT interrupt the app; a clean shutdown after that is a success (exit 0).
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

// Why the service stopped, as one JSON log line like every other (a missing variable: one clear line).
const reportFailure = (cause: Cause.Cause<unknown>) => {
  if (Cause.hasInterruptsOnly(cause)) return Effect.void
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error) && error.value instanceof MissingConfig) return Effect.logFatal(error.value.message)
  return Effect.logFatal("chatico-mapper stopped", cause)
}

Layer.launch(AppLive).pipe(
  Effect.tapCause(reportFailure),
  Effect.provide(BootLogging),
  NodeRuntime.runMain({ disableErrorReporting: true, teardown })
)
