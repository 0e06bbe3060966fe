import { Effect } from "effect"
import { ReplayFilter } from "../../domain/WebhookLog.ts"
import { Operations, REPLAY_MAX, reasons } from "../../services/Operations.ts"
import { audit } from "../Audit.ts"
import { appChoices } from "./EventsPage.ts"
import { asUtc, decodeWithErrors, type FieldErrors, filled, issuesText } from "./Forms.ts"
import { errorPage, type Incoming } from "./Handler.ts"
import { html, page, type SafeHtml, seeOther } from "./Html.ts"
import { CONSOLE, csrfField, field, layout, type PageContext, select } from "./Layout.ts"

const FILTERS = ["status", "owner_id", "worker_app_id", "since", "until"] as const
const STATUSES = [["", "routed, unroutable or dead-lettered"], ["routed", "routed"], ["unroutable", "unroutable"], [
  "dead_lettered",
  "dead lettered"
]] as const

const filterForm = (values: Readonly<Record<string, string>>, errors: FieldErrors, apps: ReadonlyArray<readonly [string, string]>) =>
  html`<form method="get" action="${CONSOLE}/replay" class="filters" aria-label="Events to replay">
  <input type="hidden" name="preview" value="1">
  ${select("status", "Status", STATUSES, values["status"])}
  ${field({ name: "owner_id", label: "Account (owner id)", value: values["owner_id"], error: errors["owner_id"], attributes: `inputmode="numeric"` })}
  ${select("worker_app_id", "Worker app", [["", "any"], ...apps], values["worker_app_id"])}
  ${errors["worker_app_id"] === undefined ? null : html`<p class="error">${errors["worker_app_id"]}</p>`}
  ${field({ name: "since", label: "From (UTC)", type: "datetime-local", value: values["since"], error: errors["since"], attributes: `step="1"` })}
  ${field({ name: "until", label: "To (UTC)", type: "datetime-local", value: values["until"], error: errors["until"], attributes: `step="1"` })}
  <button type="submit">Count (dry run)</button>
</form>`

// The form's values as the API's filter: times are UTC.
const filterOf = (values: Readonly<Record<string, string>>) =>
  decodeWithErrors(ReplayFilter, {
    ...values,
    ...(values["since"] === undefined ? {} : { since: asUtc(values["since"]) }),
    ...(values["until"] === undefined ? {} : { until: asUtc(values["until"]) })
  })

const show = (content: SafeHtml, context: PageContext, status = 200) => page(layout("Replay", "replay", content, context), status)

const unavailable = (context: PageContext) => errorPage(503, "Unavailable", "The database is unavailable.", context)

export const replayPages = {
  form: (incoming: Incoming) =>
    Effect.gen(function*() {
      const values = filled(new Map(incoming.query), FILTERS)
      const apps = yield* appChoices
      const done = Number(incoming.query.get("queued"))
      const intro = html`<p>Events matching the filter go back to pending and are delivered again, in order, with the next attempt number. At most ${REPLAY_MAX} per replay.</p>${
        Number.isSafeInteger(done) && incoming.query.has("queued") ? html`<p class="notice" role="status" id="replay-done">Queued ${done} event${done === 1 ? "" : "s"} again.</p>` : null
      }`
      if (incoming.query.get("preview") !== "1") return show(html`${intro}${filterForm(values, {}, apps)}`, incoming.context)
      const filter = filterOf(values)
      if (!filter.ok) return show(html`${intro}${filterForm(values, filter.errors, apps)}`, incoming.context)
      const count = yield* (yield* Operations).replay({ ...filter.value, dry_run: true }).pipe(
        reasons("InvalidFilter", "DatabaseUnavailable"),
        Effect.map((result) => ({ ok: true as const, result })),
        Effect.catchTag("InvalidFilter", (error) => Effect.succeed({ ok: false as const, detail: issuesText(error) }))
      )
      if (!count.ok) return show(html`${intro}${filterForm(values, { form: count.detail }, apps)}<p class="error" role="alert">${count.detail}</p>`, incoming.context)
      const { queued, more } = count.result
      const confirm = queued === 0
        ? html`<p id="dry-run">No event matches: nothing to replay.</p>`
        : html`<div class="card" id="dry-run-card">
  <p id="dry-run"><strong id="dry-run-count">${queued}</strong> event${queued === 1 ? "" : "s"} would be queued again${more ? ` (more match: replay again for the rest)` : ""}.</p>
  <form method="post" action="${CONSOLE}/replay" class="inline">
    ${csrfField(incoming.context.csrf)}
    ${Object.entries(values).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
    <button type="submit" class="danger">Replay ${queued} event${queued === 1 ? "" : "s"}</button>
  </form>
  <a href="${CONSOLE}/replay">Cancel</a>
</div>`
      return show(html`${intro}${filterForm(values, {}, apps)}${confirm}`, incoming.context)
    }).pipe(Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(unavailable(incoming.context)))),

  confirm: (incoming: Incoming) =>
    Effect.gen(function*() {
      const values = filled(incoming.form, FILTERS)
      const filter = filterOf(values)
      if (!filter.ok) return show(filterForm(values, filter.errors, yield* appChoices), incoming.context)
      const result = yield* (yield* Operations).replay(filter.value).pipe(reasons("InvalidFilter", "DatabaseUnavailable"))
      yield* audit("replay.requested", incoming.request, { filter: filter.value, ...result, via: "console" })
      return seeOther(`${CONSOLE}/replay?queued=${result.queued}`)
    }).pipe(
      Effect.catchTag("InvalidFilter", (error) => Effect.succeed(errorPage(422, "Replay", issuesText(error), incoming.context))),
      Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(unavailable(incoming.context)))
    )
}
