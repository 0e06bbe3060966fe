import { Effect, Option, Redacted } from "effect"
import { HttpRouter, type HttpServerRequest, HttpServerResponse } from "effect/http"
import { html, page, seeOther } from "./Html.ts"
import { CONSOLE, layout, type PageContext } from "./Layout.ts"
import type { Session, Sessions } from "./Session.ts"

/** What a console handler is given: the request's parts, read once. */
export interface Incoming {
  readonly request: HttpServerRequest.HttpServerRequest
  readonly session: Session
  readonly context: PageContext
  readonly query: URLSearchParams
  /** The url-encoded form of a POST (empty for GET). */
  readonly form: ReadonlyMap<string, string>
  readonly params: Readonly<Record<string, string | undefined>>
  readonly client: string
}

export type ConsoleHandler<R> = (incoming: Incoming) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>

const readForm = (request: HttpServerRequest.HttpServerRequest) =>
  request.urlParamsBody.pipe(
    Effect.map((params) => {
      const form = new Map<string, string>()
      for (const [name, value] of params) {
        if (!form.has(name)) form.set(name, Redacted.isRedacted(value) ? Redacted.value(value) : value)
      }
      return form
    }),
    Effect.option
  )

export const errorPage = (status: number, title: string, message: string, context?: PageContext) =>
  page(layout(title, "overview", html`<p class="error">${message}</p><p><a href="${CONSOLE}">Back to the overview</a></p>`, context), status)

/** The login page's address, remembering where to go after signing in (only console paths). */
const loginRedirect = (request: HttpServerRequest.HttpServerRequest) => {
  const next = new URL(request.url, "http://console").pathname
  return `${CONSOLE}/login${next === CONSOLE || !next.startsWith(`${CONSOLE}/`) ? "" : `?next=${encodeURIComponent(next)}`}`
}

/**
 * Wraps a console route: only signed-in sessions get through (others go to
 * the login page), and every POST must carry the session's CSRF token.
 */
export const guarded = <R>(sessions: Sessions, handler: ConsoleHandler<R>, options: { readonly signedIn: boolean }) =>
  Effect.fn("Console.page")(function*(request: HttpServerRequest.HttpServerRequest) {
    const session = sessions.read(request)
    if (options.signedIn && session?.signedIn !== true) {
      // htmx's refresh of a panel sends the whole page to the login form instead of swapping it in.
      if (request.headers["hx-request"] === "true") {
        return HttpServerResponse.empty({ status: 204, headers: { "hx-redirect": `${CONSOLE}/login` } })
      }
      return request.method === "GET" ? seeOther(loginRedirect(request)) : errorPage(401, "Signed out", "Your session has ended: sign in again.")
    }
    // A visitor without a session gets one, so the login form has a CSRF token to carry.
    const current = session ?? sessions.visitor()
    const csrf = sessions.csrfToken(current)
    const form = request.method === "POST" ? Option.getOrElse(yield* readForm(request), () => new Map<string, string>()) : new Map<string, string>()
    if (request.method === "POST" && !sessions.csrfValid(current, form.get("_csrf"))) {
      return errorPage(403, "Refused", "This form has expired or did not come from the console: reload the page and try again.")
    }
    const params = yield* HttpRouter.params
    const response = yield* handler({
      request,
      session: current,
      context: { csrf },
      query: new URL(request.url, "http://console").searchParams,
      form,
      params,
      client: Option.getOrElse(request.remoteAddress, () => "unknown")
    })
    return session === undefined ? sessions.attach(response, current, request) : response
  })

/** A notice shown on the next page, named by a key so no text is reflected from the URL. */
export const withNotice = (context: PageContext, notices: Readonly<Record<string, string>>, key: string | null) =>
  key !== null && key in notices ? { ...context, notice: notices[key] } : context
