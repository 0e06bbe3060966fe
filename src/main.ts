import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit, Layer } from "effect"
import * as Runtime from "effect/Runtime"
import { AppLive } from "./layers/App.ts"
import { BootLogging } from "./layers/Logging.ts"

// SIGTERM/SIGINT interrupt the app; a clean shutdown after that is a success (exit 0).
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

Layer.launch(AppLive).pipe(
  Effect.tapErrorTag("MissingConfig", (error) => Effect.logFatal(error.message)),
  Effect.provide(BootLogging),
  NodeRuntime.runMain({ teardown })
)
