import type { HttpServerRequest } from "effect/http"

/** The path of both webhook routes (the router also answers it with a trailing slash). */
export const WEBHOOK_PATH = "/webhook"

/** Seconds Meta is asked to wait before redelivering after any webhook 503. */
export const WEBHOOK_RETRY_AFTER_SECONDS = 5

/** True for a request to a webhook route, whose server span the webhook stage makes itself. */
export const isWebhookRequest = (request: HttpServerRequest.HttpServerRequest) => {
  const url = request.url
  return url.startsWith(WEBHOOK_PATH) && (url.length === WEBHOOK_PATH.length || url[WEBHOOK_PATH.length] === "/" || url[WEBHOOK_PATH.length] === "?")
}
