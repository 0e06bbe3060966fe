import type { HttpServerRequest } from "effect/http"

/** The path of both webhook routes (the router also answers it with a trailing slash). */
export const WEBHOOK_PATH = "/webhook"

/** Seconds Meta is asked to wait before redelivering after any webhook 503. */
export const WEBHOOK_RETRY_AFTER_SECONDS = 5

const ABSOLUTE_FORM = /^https?:\/\//i

/**
 * A request target in origin form (`/path?query`): an absolute-form target (`http://host/path`,
 * RFC 9112 §3.2.2) becomes its path and query, as effect's server makes it for the router.
 */
export const originForm = (target: string) => {
  if (target.startsWith("/") || !ABSOLUTE_FORM.test(target)) return target
  try {
    const url = new URL(target)
    return url.pathname + url.search
  } catch {
    return target
  }
}

/** True for a request URL (in origin form) of a webhook route: `/webhook` or `/webhook/`, with or without a query. */
export const isWebhookPath = (url: string) => {
  if (!url.startsWith(WEBHOOK_PATH)) return false
  const next = url[WEBHOOK_PATH.length]
  if (next === undefined || next === "?") return true
  if (next !== "/") return false
  const after = url[WEBHOOK_PATH.length + 1]
  return after === undefined || after === "?"
}

/** True for a request to a webhook route, whose server span the webhook stage makes itself. */
export const isWebhookRequest = (request: HttpServerRequest.HttpServerRequest) => isWebhookPath(request.url)
