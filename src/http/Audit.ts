import { Effect, Option } from "effect"
import type { HttpServerRequest } from "effect/http"

/** Who changed what: one `audit` line per admin change, with the caller's address (never the token). */
export const audit = (action: string, request: HttpServerRequest.HttpServerRequest, fields: Record<string, unknown>) =>
  Effect.logInfo("audit").pipe(
    Effect.annotateLogs({ audit: action, client: Option.getOrElse(request.remoteAddress, () => "unknown"), ...fields })
  )
