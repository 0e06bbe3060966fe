import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit, Layer } from "effect"
import * as Runtime from "effect/Runtime"
import { AppLive } from "./layers/App.ts"
import { AppConfigError } from "./services/AppConfig.ts"
import { BootLogging } from "./layers/Logging.ts"

// SIGTERM/SIGINT interrupt the app; a clean shutdown after that is a success (exit 0).
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

/** An error and the errors it wraps as one line: messages and system error codes, no stack. */
const oneLine = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    if (current instanceof Error) {
      const code = "code" in current && typeof current.code === "string" ? ` (${current.code})` : ""
      const message = current.message.length > 0 ? current.message : current.name
      if (!parts.some((part) => part.includes(message))) parts.push(`${message}${code}`)
      current = current.cause
    } else {
      parts.push(String(current))
      break
    }
  }
  return parts.join(": ").replace(/\s*\n\s*/g, " ")
}

// Why the service stopped, as one JSON log line like every other: what an operator reads first.
const reportFailure = (cause: Cause.Cause<unknown>) => {
  if (Cause.hasInterruptsOnly(cause)) return Effect.void
  const error = Cause.squash(cause)
  if (error instanceof AppConfigError) return Effect.logFatal(error.message)
  return Effect.logFatal(`chatico-mapper stopped: ${oneLine(error)}`)
}

Layer.launch(AppLive).pipe(
  Effect.tapCause(reportFailure),
  Effect.provide(BootLogging),
  NodeRuntime.runMain({ disableErrorReporting: true, teardown })
)
