import { Effect, Redacted } from "effect"
import { HttpServerResponse } from "effect/http"
import { constantTimeEqual } from "../../services/ConstantTime.ts"
import type { Incoming } from "./Handler.ts"
import { html, page, seeOther } from "./Html.ts"
import { CONSOLE, csrfField, field, layout } from "./Layout.ts"
import type { makeLoginThrottle, Sessions } from "./Session.ts"

// Only a console path of this origin: never `//host` or an absolute URL.
const safeNext = (next: string | undefined) =>
  next !== undefined && /^\/console(\/[A-Za-z0-9._~\/-]*)?$/.test(next) ? next : CONSOLE

const loginForm = (csrf: string, next: string, error?: string) =>
  layout("Sign in", "login", html`<form method="post" action="${CONSOLE}/login" class="card narrow">
  ${csrfField(csrf)}
  <input type="hidden" name="next" value="${next}">
  ${
    field({
      name: "token",
      label: "Admin token (SECRET_KEY)",
      type: "password",
      required: true,
      error,
      attributes: `autocomplete="current-password" autofocus`
    })
  }
  <button type="submit">Sign in</button>
</form>`)

export const loginPages = (secretKey: Redacted.Redacted<string>, sessions: Sessions, throttle: ReturnType<typeof makeLoginThrottle>) => ({
  show: ({ session, context, query }: Incoming) =>
    Effect.succeed(
      session.signedIn ? seeOther(CONSOLE) : page(loginForm(context.csrf, safeNext(query.get("next") ?? undefined)))
    ),

  submit: ({ request, form, context, client }: Incoming) =>
    Effect.gen(function*() {
      const next = safeNext(form.get("next"))
      const wait = throttle.retryAfter(client)
      if (wait > 0) {
        yield* Effect.logWarning("console sign-in refused: too many wrong tokens").pipe(Effect.annotateLogs({ client }))
        return page(loginForm(context.csrf, next, `Too many wrong tokens: try again in ${wait} s.`), 429).pipe(
          HttpServerResponse.setHeader("retry-after", String(wait))
        )
      }
      const token = form.get("token") ?? ""
      if (token.length === 0 || !constantTimeEqual(token, Redacted.value(secretKey))) {
        throttle.failed(client)
        yield* Effect.logWarning("console sign-in refused: wrong token").pipe(Effect.annotateLogs({ client }))
        return page(loginForm(context.csrf, next, "This is not the admin token."))
      }
      throttle.succeeded(client)
      yield* Effect.logInfo("console sign-in").pipe(Effect.annotateLogs({ client }))
      // A fresh session id on sign-in, so a session planted before it is worth nothing.
      return sessions.attach(seeOther(next), sessions.signedIn(), request)
    }),

  logout: ({ request, client }: Incoming) =>
    Effect.as(
      Effect.logInfo("console sign-out").pipe(Effect.annotateLogs({ client })),
      sessions.clear(seeOther(`${CONSOLE}/login`), request)
    )
})
