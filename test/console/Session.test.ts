import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import { CONTENT_SECURITY_POLICY } from "../../src/http/console/Html.ts"
import { LOGIN_FAILURES_ALLOWED, SESSION_COOKIE } from "../../src/http/console/Session.ts"
import { Amqp } from "../support/Amqp.ts"
import { JournalDb, SECRET_KEY, TestApp } from "../support/TestApp.ts"
import { commentEvent, postWebhook, webhookText } from "../support/Webhooks.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"

// The console's session, CSRF and headers over plain HTTP (no browser needed to see them).

const TRACE_UI = "http://localhost:16686/trace/{trace_id}"
const environment = Layer.mergeAll(JournalDb, Amqp.layer("console_session")).pipe(
  Layer.provideMerge(TestApp.layer("console_session", { traceUiUrl: Option.some(TRACE_UI) }))
)

interface Fetched {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

const get = (url: string, init: RequestInit = {}) =>
  Effect.promise(async (): Promise<Fetched> => {
    const response = await fetch(url, { redirect: "manual", ...init })
    return { status: response.status, headers: response.headers, body: await response.text() }
  })

const cookieOf = (response: Fetched) => {
  const header = response.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))
  return header === undefined ? undefined : { header, pair: header.split(";")[0]! }
}

const csrfOf = (body: string) => /name="_csrf" value="([^"]+)"/.exec(body)?.[1] ?? ""

const form = (fields: Record<string, string>) => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(fields).toString()
})

/** Signs in as a browser would: the login page's cookie and token, then the token form. */
const signIn = (headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const { baseUrl } = yield* TestApp
    const login = yield* get(`${baseUrl}/console/login`, { headers })
    const visitor = cookieOf(login)!
    const response = yield* get(`${baseUrl}/console/login`, {
      ...form({ _csrf: csrfOf(login.body), token: SECRET_KEY, next: "/console/events" }),
      headers: { ...form({}).headers, ...headers, cookie: visitor.pair }
    })
    return { response, session: cookieOf(response) }
  })

layer(environment, { excludeTestServices: true, timeout: "120 seconds" })("console sessions", (it) => {
  it.effect("the session cookie is HttpOnly, SameSite=Strict, signed and expiring; Secure behind HTTPS", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* TestApp
      const { response, session } = yield* signIn()
      assert.strictEqual(response.status, 303)
      assert.strictEqual(response.headers.get("location"), "/console/events")
      assert.isDefined(session)
      const attributes = session!.header.split(";").map((a) => a.trim().toLowerCase())
      assert.include(attributes, "httponly")
      assert.include(attributes, "samesite=strict")
      assert.include(attributes, "path=/console")
      assert.notInclude(attributes, "secure")
      const expires = Date.parse(attributes.find((a) => a.startsWith("expires="))!.slice("expires=".length))
      assert.isAbove(expires, Date.now() + 7 * 3600_000)
      assert.isBelow(expires, Date.now() + 9 * 3600_000)
      assert.notInclude(session!.header, SECRET_KEY)
      assert.strictEqual((yield* get(`${baseUrl}/console`, { headers: { cookie: session!.pair } })).status, 200)

      // A cookie changed by one character, or with its expiry moved, is no session.
      const separator = session!.pair.indexOf("=")
      const name = session!.pair.slice(0, separator)
      const value = session!.pair.slice(separator + 1)
      const parts = value.split(".")
      const later = [parts[0], String(Number(parts[1]) + 3600_000), parts[2], parts[3]].join(".")
      const flipped = value.slice(0, -1) + (value.endsWith("A") ? "B" : "A")
      for (const forged of [later, flipped]) {
        const page = yield* get(`${baseUrl}/console`, { headers: { cookie: `${name}=${forged}` } })
        assert.strictEqual(page.status, 303)
        assert.strictEqual(page.headers.get("location"), "/console/login")
      }

      const proxied = yield* signIn({ "x-forwarded-proto": "https" })
      assert.include(proxied.session!.header.split(";").map((a) => a.trim().toLowerCase()), "secure")
    }))

  it.effect("every page and asset carries a strict CSP and X-Frame-Options DENY; no page has inline script", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* TestApp
      const { session } = yield* signIn()
      const cookie = { cookie: session!.pair }
      for (const path of ["/console/login", "/console", "/console/apps", "/console/apps/new", "/console/events", "/console/replay", "/console/assets/console.js", "/console/assets/uPlot.iife.min.js", "/console/assets/htmx.min.js"]) {
        // Signed in, the login page sends the operator on to the overview: fetch it as a visitor.
        const page = yield* get(`${baseUrl}${path}`, path === "/console/login" ? {} : { headers: cookie })
        assert.strictEqual(page.status, 200, path)
        assert.strictEqual(page.headers.get("content-security-policy"), CONTENT_SECURITY_POLICY, path)
        assert.strictEqual(page.headers.get("x-frame-options"), "DENY", path)
        assert.strictEqual(page.headers.get("x-content-type-options"), "nosniff", path)
        if (page.headers.get("content-type")?.startsWith("text/html") === true) {
          assert.strictEqual(page.headers.get("cache-control"), "no-store", path)
          // Scripts only by src from this origin; a JSON data block is not run.
          for (const tag of page.body.match(/<script[^>]*>/g) ?? []) {
            assert.match(tag, /^<script (src="\/console\/assets\/[A-Za-z.]+\.js" defer|type="application\/json" id="chart-data")>$/, path)
          }
          assert.notMatch(page.body, /\son[a-z]+=|style=|javascript:/i, path)
          assert.notInclude(page.body, SECRET_KEY, path)
        }
      }
      assert.match(CONTENT_SECURITY_POLICY, /script-src 'self'(;|$)/)
      assert.match(CONTENT_SECURITY_POLICY, /frame-ancestors 'none'/)
    }))

  it.effect("the overview's live panel refreshes as a fragment; once signed out, htmx is sent to the login page", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* TestApp
      const { session } = yield* signIn()
      const htmx = { "hx-request": "true" }
      const panel = yield* get(`${baseUrl}/console/overview/live`, { headers: { ...htmx, cookie: session!.pair } })
      assert.strictEqual(panel.status, 200)
      assert.match(panel.body, /^<section id="live" [^>]*hx-get="\/console\/overview\/live" hx-trigger="every 15s"/)
      assert.include(panel.body, `data-check="database"`)
      const signedOut = yield* get(`${baseUrl}/console/overview/live`, { headers: htmx })
      assert.strictEqual(signedOut.status, 204)
      assert.strictEqual(signedOut.headers.get("hx-redirect"), "/console/login")
    }))

  it.effect("the login form needs its CSRF token; sign-out ends the session in the browser", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* TestApp
      const login = yield* get(`${baseUrl}/console/login`)
      const visitor = cookieOf(login)!
      const noToken = yield* get(`${baseUrl}/console/login`, { ...form({ token: SECRET_KEY }), headers: { ...form({}).headers, cookie: visitor.pair } })
      assert.strictEqual(noToken.status, 403)
      assert.isUndefined(cookieOf(noToken))
      // A redirect after sign-in goes only to a console path of this origin.
      const offsite = yield* get(`${baseUrl}/console/login`, {
        ...form({ _csrf: csrfOf(login.body), token: SECRET_KEY, next: "//evil.example/console" }),
        headers: { ...form({}).headers, cookie: visitor.pair }
      })
      assert.strictEqual(offsite.headers.get("location"), "/console")

      const { session } = yield* signIn()
      const page = yield* get(`${baseUrl}/console`, { headers: { cookie: session!.pair } })
      const out = yield* get(`${baseUrl}/console/logout`, { ...form({ _csrf: csrfOf(page.body) }), headers: { ...form({}).headers, cookie: session!.pair } })
      assert.strictEqual(out.status, 303)
      assert.strictEqual(out.headers.get("location"), "/console/login")
      const cleared = cookieOf(out)!
      assert.match(cleared.header, /^chatico_console=;/)
      assert.match(cleared.header.toLowerCase(), /max-age=0/)
    }))

  it.effect("an event's trace id links to TRACE_UI_URL; its exact bytes come as text", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const sql = yield* SqlClient.SqlClient
      const worker = yield* createWorkerApp("trace")
      const event = commentEvent(worker.owner_id, { text: "</pre><b>bold?</b>" })
      assert.strictEqual((yield* postWebhook(app, webhookText([[event]]))).status, 200)
      const rows = yield* eventually(
        sql<{ readonly event_id: string }>`SELECT event_id FROM webhook_events WHERE value_raw = ${event.valueRaw}`.pipe(Effect.orDie),
        (r) => r.length === 1
      )
      const eventId = rows[0]!.event_id
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
      yield* sql`UPDATE webhook_events SET trace_context = ${JSON.stringify({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` })}::jsonb WHERE event_id = ${eventId}`.pipe(Effect.orDie)
      const { session } = yield* signIn()
      const page = yield* get(`${app.baseUrl}/console/events/${eventId}`, { headers: { cookie: session!.pair } })
      assert.strictEqual(page.status, 200)
      assert.include(page.body, `<a href="http://localhost:16686/trace/${traceId}" rel="noreferrer"><code>${traceId}</code></a>`)
      assert.include(page.body, "&lt;/pre&gt;&lt;b&gt;bold?&lt;/b&gt;")
      assert.notInclude(page.body, "<b>bold?</b>")
      const raw = yield* get(`${app.baseUrl}/console/events/${eventId}/raw`, { headers: { cookie: session!.pair } })
      assert.strictEqual(raw.body, event.valueRaw)
      assert.strictEqual(raw.headers.get("content-type"), "text/plain; charset=utf-8")
      // Not signed in: the login page, for pages and raw bytes alike.
      assert.strictEqual((yield* get(`${app.baseUrl}/console/events/${eventId}/raw`)).status, 303)
    }))

  it.effect(`after ${LOGIN_FAILURES_ALLOWED} wrong tokens the login answers 429 with Retry-After, even to the right token`, () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* TestApp
      const login = yield* get(`${baseUrl}/console/login`)
      const visitor = cookieOf(login)!
      const attempt = (token: string) =>
        get(`${baseUrl}/console/login`, { ...form({ _csrf: csrfOf(login.body), token }), headers: { ...form({}).headers, cookie: visitor.pair } })
      for (let i = 0; i < LOGIN_FAILURES_ALLOWED; i++) {
        const refused = yield* attempt(`wrong-${i}`)
        assert.strictEqual(refused.status, 200)
        assert.include(refused.body, "This is not the admin token.")
        assert.isUndefined(cookieOf(refused))
      }
      const limited = yield* attempt(SECRET_KEY)
      assert.strictEqual(limited.status, 429)
      assert.isAtLeast(Number(limited.headers.get("retry-after")), 1)
      assert.isUndefined(cookieOf(limited))
    }))
})
