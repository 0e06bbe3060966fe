import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { Page } from "playwright-core"
import { WorkerAppId } from "../../src/domain/WorkerApp.ts"
import { AdminClient, answered, refused } from "../support/AdminClient.ts"
import { Amqp } from "../support/Amqp.ts"
import { assertPageSound, Browser, evaluate } from "../support/Browser.ts"
import { JournalDb, SECRET_KEY, TestApp } from "../support/TestApp.ts"
import { commentEvent, postWebhook, type SentEvent, uniqueId, webhookText } from "../support/Webhooks.ts"
import { createWorkerApp, eventually } from "../support/WorkerApps.ts"

// The console driven in Debian's chromium against the real service, Postgres and RabbitMQ.
// The tests run in order and share one browser session: sign in, create an app, send traffic, look.


const environment = Layer.mergeAll(JournalDb, Amqp.layer("console"), Browser.layer).pipe(
  Layer.provideMerge(TestApp.layer("console"))
)

const XSS_TEXT = "<script>alert(1)</script>"
const XSS_ATTRIBUTE = "\"><img src=x onerror=alert(2)>"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** Goes to a console path and checks the page (no offsite request, no console error, labels, width). */
const visit = (page: Page, path: string) =>
  Effect.gen(function*() {
    const { baseUrl } = yield* TestApp
    const { watch } = yield* Browser
    const response = yield* promise(() => page.goto(`${baseUrl}${path}`))
    yield* assertPageSound(page, watch)
    return response?.status() ?? 0
  })

/** Submits a form by clicking `button` and waits for the page it leads to. */
const submit = (page: Page, button: string) =>
  Effect.gen(function*() {
    const { watch } = yield* Browser
    const [response] = yield* promise(() =>
      Promise.all([page.waitForNavigation(), page.locator(button).click()])
    )
    yield* assertPageSound(page, watch)
    return response?.status() ?? 0
  })

const text = (page: Page, selector: string) => promise(async () => (await page.locator(selector).first().textContent()) ?? "")

interface State {
  readonly owner: string
  appId: string
  queue: string
  sent: ReadonlyArray<SentEvent>
  eventIds: Array<string>
}
const state: State = { owner: uniqueId(), appId: "", queue: "", sent: [], eventIds: [] }

const eventIdOf = (event: SentEvent) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* eventually(
      sql<{ readonly event_id: string }>`SELECT event_id FROM webhook_events WHERE value_raw = ${event.valueRaw}`.pipe(Effect.orDie),
      (r) => r.length === 1
    )
    assert.strictEqual(rows.length, 1)
    return rows[0]!.event_id
  })

const statuses = (appId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<{ readonly event_id: string; readonly status: string }>`
      SELECT event_id, status FROM webhook_events WHERE worker_app_id = ${appId}
    `.pipe(Effect.orDie)
  })

layer(environment, { excludeTestServices: true, timeout: "240 seconds" })("the operator console in a browser", (it) => {
  it.effect("a wrong token is refused; the right one opens the overview with all four health checks", () =>
    Effect.gen(function*() {
      const { page, screenshot } = yield* Browser
      const { baseUrl } = yield* TestApp
      yield* visit(page, "/console")
      assert.strictEqual(page.url(), `${baseUrl}/console/login`)
      // The token field has the focus: an operator can type at once.
      assert.strictEqual(yield* evaluate(page, "document.activeElement.id"), "f-token")
      yield* promise(() => page.keyboard.type("not-the-token"))
      assert.strictEqual(yield* promise(() => Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]).then(([r]) => r?.status())), 200)
      assert.strictEqual(yield* text(page, "#f-token-error"), "This is not the admin token.")
      assert.strictEqual(yield* promise(() => page.locator("#f-token").getAttribute("aria-invalid")), "true")
      yield* screenshot(page, "login")

      yield* promise(() => page.fill("#f-token", SECRET_KEY))
      assert.strictEqual(yield* submit(page, "button[type=submit]"), 200)
      assert.strictEqual(page.url(), `${baseUrl}/console`)
      const checks = yield* promise(() => page.locator("li.check").evaluateAll((items) => items.map((item) => item.getAttribute("data-check"))))
      // The four dependencies, Redis (optional, never failing) and the pending backlog's own check.
      assert.deepStrictEqual(checks, ["database", "rabbitmq", "graph_api", "redis", "pipeline", "backlog"])
      assert.strictEqual(yield* text(page, "li.check[data-check=database] .badge"), "ok")
      assert.strictEqual(yield* text(page, "li.check[data-check=rabbitmq] .badge"), "ok")
      // No secret on any page.
      assert.notInclude(yield* promise(() => page.content()), SECRET_KEY)
    }))

  it.effect("a worker app is created through the form; a bad owner_id is shown at its field", () =>
    Effect.gen(function*() {
      const { page, screenshot } = yield* Browser
      const { baseUrl } = yield* TestApp
      state.queue = (yield* Amqp).queueName("console-app")
      yield* visit(page, "/console/apps/new")
      yield* promise(() => page.fill("#f-name", `console ${state.queue}`))
      yield* promise(() => page.fill("#f-owner_id", "12ab34"))
      yield* promise(() => page.fill("#f-queue_name", state.queue))
      assert.strictEqual(yield* submit(page, "main button[type=submit]"), 200)
      assert.strictEqual(yield* text(page, "#f-owner_id-error"), "must be a string of 1 to 32 digits, without leading zeros")
      assert.strictEqual(yield* promise(() => page.locator("#f-owner_id").getAttribute("aria-invalid")), "true")
      assert.strictEqual(yield* promise(() => page.locator(".field .error").count()), 1, "only the field at fault has an error")
      // What was typed is kept, so only the wrong field needs fixing.
      assert.strictEqual(yield* promise(() => page.inputValue("#f-queue_name")), state.queue)
      yield* screenshot(page, "worker-app-form")

      yield* promise(() => page.fill("#f-owner_id", state.owner))
      assert.strictEqual(yield* submit(page, "main button[type=submit]"), 200)
      assert.strictEqual(page.url(), `${baseUrl}/console/apps?notice=created`)
      const row = page.locator("#apps tbody tr", { hasText: state.queue })
      assert.strictEqual(yield* promise(() => row.count()), 1)
      state.appId = (yield* promise(() => row.getAttribute("data-app"))) ?? ""
      const app = yield* answered((yield* AdminClient).workerApps.get({ params: { id: WorkerAppId.make(state.appId) } }))
      assert.strictEqual(app.status, 200)
      assert.strictEqual(app.body.owner_id, state.owner)
      // Its queue exists when the form returns, as with the API.
      assert.strictEqual(yield* (yield* Amqp).queueMessageCount(state.queue), 0)
      yield* screenshot(page, "worker-apps")
    }))

  it.effect("sent webhooks are found by the search; the detail shows the payload, XSS as text; replay delivers again", () =>
    Effect.gen(function*() {
      const { page, screenshot, watch } = yield* Browser
      const app = yield* TestApp
      const amqp = yield* Amqp
      state.sent = [
        commentEvent(state.owner, { text: XSS_TEXT }),
        commentEvent(state.owner, { text: XSS_ATTRIBUTE }),
        commentEvent(state.owner, { text: "plain comment" })
      ]
      for (const event of state.sent) assert.strictEqual((yield* postWebhook(app, webhookText([[event]]))).status, 200)
      const delivered = yield* amqp.drainQueue(state.queue, { expected: 3, firstMessageMs: 30_000 })
      assert.strictEqual(delivered.length, 3)
      state.eventIds = []
      for (const event of state.sent) state.eventIds.push(yield* eventIdOf(event))

      yield* visit(page, `/console/events?owner_id=${state.owner}`)
      const rows = yield* promise(() => page.locator("#events tbody tr").evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-event"))))
      // Newest first: the last one sent is on top.
      assert.deepStrictEqual(rows, [...state.eventIds].reverse())
      yield* screenshot(page, "events")

      yield* visit(page, `/console/events/${state.eventIds[0]}`)
      const payload = JSON.parse(yield* text(page, "#payload"))
      assert.deepStrictEqual(payload, JSON.parse(state.sent[0]!.valueRaw))
      assert.strictEqual(payload.text, XSS_TEXT)
      assert.strictEqual(yield* evaluate(page, "document.querySelectorAll('main script, main img').length"), 0)
      yield* visit(page, `/console/events/${state.eventIds[1]}`)
      assert.strictEqual(JSON.parse(yield* text(page, "#payload")).text, XSS_ATTRIBUTE)
      assert.strictEqual(yield* evaluate(page, "document.querySelectorAll('main script, main img').length"), 0)
      yield* visit(page, `/console/events/${state.eventIds[0]}`)
      yield* screenshot(page, "event")
      // The exact bytes, as plain text.
      const raw = yield* promise(() => page.request.get(`${app.baseUrl}/console/events/${state.eventIds[0]}/raw`))
      assert.strictEqual(raw.headers()["content-type"], "text/plain; charset=utf-8")
      assert.strictEqual(yield* promise(() => raw.text()), state.sent[0]!.valueRaw)

      assert.strictEqual(yield* submit(page, "text=Replay this event"), 200)
      assert.strictEqual(yield* text(page, ".notice"), "The event is queued for delivery again.")
      const again = yield* amqp.takeMatching(state.queue, (m) => m.properties.messageId === state.eventIds[0], {
        expected: 1,
        firstMessageMs: 30_000
      })
      assert.strictEqual(again.length, 1)
      assert.strictEqual(JSON.parse(again[0]!.text).event_id, state.eventIds[0])
      assert.deepStrictEqual(watch.dialogs, [])
    }))

  it.effect("a filtered replay's dry run shows the right count; confirming queues them", () =>
    Effect.gen(function*() {
      const { page, screenshot } = yield* Browser
      const amqp = yield* Amqp
      // The replayed event is routed again before counting.
      const settled = yield* eventually(statuses(state.appId), (rows) => rows.length === 3 && rows.every((r) => r.status === "routed"), 30)
      assert.isTrue(settled.every((r) => r.status === "routed"))
      // Another app's events are not counted.
      const other = yield* createWorkerApp("console-other")
      const otherEvent = commentEvent(other.owner_id)
      assert.strictEqual((yield* postWebhook(yield* TestApp, webhookText([[otherEvent]]))).status, 200)
      assert.strictEqual((yield* amqp.drainQueue(other.queue_name, { expected: 1, firstMessageMs: 30_000 })).length, 1)

      yield* visit(page, "/console/replay")
      yield* promise(() => page.selectOption("#f-worker_app_id", state.appId))
      yield* promise(() => page.selectOption("#f-status", "routed"))
      assert.strictEqual(yield* submit(page, "text=Count (dry run)"), 200)
      assert.strictEqual(yield* text(page, "#dry-run-count"), "3")
      // A dry run changes nothing.
      assert.isTrue((yield* statuses(state.appId)).every((r) => r.status === "routed"))
      yield* screenshot(page, "replay")

      assert.strictEqual(yield* submit(page, "text=Replay 3 events"), 200)
      assert.strictEqual(yield* text(page, "#replay-done"), "Queued 3 events again.")
      const again = yield* amqp.drainQueue(state.queue, { expected: 3, firstMessageMs: 30_000 })
      assert.sameMembers(again.map((m) => m.properties.messageId), state.eventIds)
      assert.strictEqual(yield* amqp.queueMessageCount(other.queue_name), 0)
    }))

  it.effect("\"Replay dead letters\" on the overview replays only that worker app's dead-lettered events", () =>
    Effect.gen(function*() {
      const { page } = yield* Browser
      const amqp = yield* Amqp
      const sql = yield* SqlClient.SqlClient
      yield* eventually(statuses(state.appId), (rows) => rows.every((r) => r.status === "routed"), 30)
      // As if its publish had failed after the retry budget.
      const dead = state.eventIds[2]!
      yield* sql`UPDATE webhook_events SET status = 'dead_lettered', last_error = 'publish failed' WHERE event_id = ${dead}`.pipe(Effect.orDie)
      yield* visit(page, "/console")
      assert.strictEqual(yield* submit(page, `#app-table tr[data-app="${state.appId}"] >> text=Replay dead letters`), 200)
      assert.strictEqual(yield* text(page, "#dry-run-count"), "1")
      assert.strictEqual(yield* submit(page, "text=Replay 1 event"), 200)
      assert.strictEqual(yield* text(page, "#replay-done"), "Queued 1 event again.")
      const again = yield* amqp.drainQueue(state.queue, { expected: 1, firstMessageMs: 30_000 })
      assert.deepStrictEqual(again.map((m) => m.properties.messageId), [dead])
    }))

  it.effect("the chart has data points for the minutes with traffic", () =>
    Effect.gen(function*() {
      const { page, phone, screenshot, watch } = yield* Browser
      const sql = yield* SqlClient.SqlClient
      yield* visit(page, "/console")
      yield* promise(() => page.waitForSelector("#chart[data-ready=true] canvas"))
      const data = Schema.decodeUnknownSync(Schema.Struct({
        minutes: Schema.Array(Schema.Struct({ minute: Schema.Number, counts: Schema.Record(Schema.String, Schema.Number) }))
      }))(JSON.parse(yield* text(page, "#chart-data")))
      assert.strictEqual(data.minutes.length, 60)
      const busy = data.minutes.filter((m) => Object.values(m.counts).some((n) => n > 0))
      const journal = yield* sql<{ readonly minute: number; readonly n: number }>`
        SELECT extract(epoch FROM date_trunc('minute', received_at))::int AS minute, count(*)::int AS n
        FROM webhook_events WHERE received_at >= now() - interval '59 minutes' GROUP BY 1 ORDER BY 1
      `.pipe(Effect.orDie)
      assert.isAbove(journal.length, 0)
      assert.deepStrictEqual(busy.map((m) => m.minute), journal.map((r) => r.minute))
      for (const row of journal) {
        const minute = busy.find((m) => m.minute === row.minute)!
        assert.strictEqual(Object.values(minute.counts).reduce((a, b) => a + b, 0), row.n)
      }
      const points = Number(yield* promise(() => page.locator("#chart").getAttribute("data-points")))
      assert.strictEqual(points, busy.reduce((sum, m) => sum + Object.values(m.counts).filter((n) => n > 0).length, 0))
      assert.strictEqual(yield* promise(() => page.locator("#chart-table tbody tr").count()), busy.length)
      yield* screenshot(page, "overview")

      const small = yield* phone
      const { baseUrl } = yield* TestApp
      yield* promise(() => small.goto(`${baseUrl}/console`))
      yield* promise(() => small.waitForSelector("#chart[data-ready=true] canvas"))
      yield* assertPageSound(small, watch)
      yield* screenshot(small, "overview-phone")
      // Every page fits a phone's width (wide tables scroll inside their own box).
      for (const path of ["/console/apps", "/console/apps/new", `/console/events?owner_id=${state.owner}`, `/console/events/${state.eventIds[0]}`, "/console/replay"]) {
        yield* promise(() => small.goto(`${baseUrl}${path}`))
        yield* assertPageSound(small, watch)
      }
      yield* screenshot(small, "replay-phone")
      yield* promise(() => small.close())
    }))

  it.effect("keyboard: the skip link comes first, then the navigation; a worker app is deleted after a confirmation", () =>
    Effect.gen(function*() {
      const { page, screenshot } = yield* Browser
      const { baseUrl } = yield* TestApp
      const doomed = yield* createWorkerApp("console-doomed")
      yield* visit(page, "/console/apps")
      yield* promise(() => page.keyboard.press("Tab"))
      assert.strictEqual(yield* evaluate(page, "document.activeElement.className"), "skip")
      yield* promise(() => page.keyboard.press("Tab"))
      assert.strictEqual(yield* evaluate(page, "document.activeElement.textContent"), "Overview")

      yield* promise(() => page.locator(`#apps tr[data-app="${doomed.id}"] >> text=Delete`).click())
      yield* promise(() => page.waitForURL(`${baseUrl}/console/apps/${doomed.id}/delete`))
      yield* screenshot(page, "delete-confirmation")
      yield* promise(() => page.locator("button.danger").focus())
      yield* promise(() => Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]))
      assert.strictEqual(page.url(), `${baseUrl}/console/apps?notice=deleted`)
      assert.strictEqual((yield* refused((yield* AdminClient).workerApps.get({ params: { id: doomed.id } }))).status, 404)
    }))

  it.effect("a state-changing POST without the CSRF token, or with another, is refused", () =>
    Effect.gen(function*() {
      const { page } = yield* Browser
      const app = yield* TestApp
      const name = `csrf-${uniqueId()}`
      const form = { name, owner_id: uniqueId(), queue_name: (yield* Amqp).queueName("csrf"), is_active: "on" }
      // The browser's own session cookie goes with these requests: only the token is missing or wrong.
      const without = yield* promise(() => page.request.post(`${app.baseUrl}/console/apps/new`, { form, maxRedirects: 0 }))
      assert.strictEqual(without.status(), 403)
      const wrong = yield* promise(() => page.request.post(`${app.baseUrl}/console/apps/new`, { form: { ...form, _csrf: "forged" }, maxRedirects: 0 }))
      assert.strictEqual(wrong.status(), 403)
      const replay = yield* promise(() => page.request.post(`${app.baseUrl}/console/replay`, { form: { status: "routed" }, maxRedirects: 0 }))
      assert.strictEqual(replay.status(), 403)
      const list = yield* (yield* AdminClient).workerApps.list({ query: { limit: 500 } })
      assert.isFalse(list.items.some((item) => item.name === name))
    }))

  it.effect("no page made a request beyond 127.0.0.1 or logged a console error", () =>
    Effect.gen(function*() {
      const { watch } = yield* Browser
      assert.deepStrictEqual(watch.offsite, [])
      assert.deepStrictEqual(watch.consoleErrors, [])
      assert.deepStrictEqual(watch.dialogs, [])
    }))
})
