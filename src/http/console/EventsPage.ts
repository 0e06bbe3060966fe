import { Effect, Option, Schema } from "effect"
import { HttpServerResponse } from "effect/http"
import { EventStatus, type WebhookLogEntry, type WebhookLogEvent, Timestamp } from "../../domain/WebhookLog.ts"
import { OwnerId, WorkerAppId } from "../../domain/WorkerApp.ts"
import { AppConfig } from "../../services/AppConfig.ts"
import { audit } from "../Audit.ts"
import { Operations, reasons } from "../../services/Operations.ts"
import { WorkerApps } from "../../services/WorkerApps.ts"
import { asUtc, decodeWithErrors, type FieldErrors, filled, issuesText } from "./Forms.ts"
import { errorPage, type Incoming, withNotice } from "./Handler.ts"
import { html, page, SECURITY_HEADERS, seeOther } from "./Html.ts"
import { CONSOLE, field, formatTime, layout, postButton, select } from "./Layout.ts"
import { ConsoleStats } from "./Stats.ts"

/** Events on one page of the search. */
export const EVENTS_PAGE = 50
/** Worker apps offered in the search's drop-down. */
export const APP_CHOICES = 500
/** How much of a payload the list shows. */
const SUMMARY_CHARS = 100

export const EventId = Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/, { message: "must be 64 hex digits" }))

const SearchFilter = Schema.Struct({
  status: Schema.optionalKey(EventStatus),
  owner_id: Schema.optionalKey(OwnerId),
  worker_app_id: Schema.optionalKey(WorkerAppId),
  since: Schema.optionalKey(Timestamp),
  until: Schema.optionalKey(Timestamp),
  event_id: Schema.optionalKey(EventId)
})

const FILTERS = ["status", "owner_id", "worker_app_id", "since", "until", "event_id"] as const
const STATUSES = ["pending", "routed", "unroutable", "dead_lettered", "duplicate", "ignored"] as const

const NOTICES = { replayed: "The event is queued for delivery again.", "not-replayable": "The event is pending: it will be delivered without a replay." }

/** Worker apps as `[id, name]` choices for a drop-down. */
export const appChoices = Effect.gen(function*() {
  const { items } = yield* (yield* WorkerApps).list({ limit: APP_CHOICES, offset: 0 })
  return items.map((app) => [app.id, app.name] as const)
}).pipe(Effect.orElseSucceed((): ReadonlyArray<readonly [string, string]> => []))

const summary = (entry: WebhookLogEntry) => {
  const text = entry.value === null ? "(value kept as raw text)" : JSON.stringify(entry.value)
  return text.length > SUMMARY_CHARS ? `${text.slice(0, SUMMARY_CHARS)}…` : text
}

const statusBadge = (status: string) => html`<span class="badge status-${status}">${status.replace("_", " ")}</span>`

const searchForm = (values: Readonly<Record<string, string>>, errors: FieldErrors, apps: ReadonlyArray<readonly [string, string]>) =>
  html`<form method="get" action="${CONSOLE}/events" class="filters" role="search" aria-label="Search events">
  ${select("status", "Status", [["", "any"], ...STATUSES.map((s) => [s, s.replace("_", " ")] as const)], values["status"])}
  ${field({ name: "owner_id", label: "Account (owner id)", value: values["owner_id"], error: errors["owner_id"], attributes: `inputmode="numeric"` })}
  ${select("worker_app_id", "Worker app", [["", "any"], ...apps], values["worker_app_id"])}
  ${errors["worker_app_id"] === undefined ? null : html`<p class="error">${errors["worker_app_id"]}</p>`}
  ${field({ name: "since", label: "From (UTC)", type: "datetime-local", value: values["since"], error: errors["since"], attributes: `step="1"` })}
  ${field({ name: "until", label: "To (UTC)", type: "datetime-local", value: values["until"], error: errors["until"], attributes: `step="1"` })}
  ${field({ name: "event_id", label: "Event id", value: values["event_id"], error: errors["event_id"] })}
  <button type="submit">Search</button>
</form>`

const detailsList = (event: WebhookLogEvent, traceLink: string | null) =>
  html`<dl class="fields">
  <div><dt>Event id</dt><dd><code>${event.event_id}</code></dd></div>
  <div><dt>Status</dt><dd>${statusBadge(event.status)}</dd></div>
  <div><dt>Received</dt><dd>${formatTime(event.received_at)}</dd></div>
  <div><dt>Delivered</dt><dd>${formatTime(event.delivered_at)}</dd></div>
  <div><dt>Object / field</dt><dd>${event.object} / ${event.field}</dd></div>
  <div><dt>Entry id</dt><dd>${event.entry_id}</dd></div>
  <div><dt>Entry time</dt><dd>${event.entry_time === null ? "—" : new Date(event.entry_time * 1000).toISOString()}</dd></div>
  <div><dt>Media id</dt><dd>${event.media_id ?? "—"}</dd></div>
  <div><dt>Owner id</dt><dd>${event.owner_id ?? "—"}</dd></div>
  <div><dt>Worker app</dt><dd>${event.worker_app_id === null ? "—" : html`<a href="${CONSOLE}/apps/${event.worker_app_id}">${event.worker_app_id}</a>`}</dd></div>
  <div><dt>Attempts</dt><dd id="attempts">${event.attempts}</dd></div>
  <div><dt>Last error</dt><dd id="last-error">${event.last_error ?? "—"}</dd></div>
  <div><dt>Redeliveries from Meta</dt><dd>${event.duplicates}</dd></div>
  <div><dt>Routing note</dt><dd>${event.routing_note ?? "—"}</dd></div>
  <div><dt>Trace id</dt><dd id="trace">${
    event.trace_id === null ? "—" : traceLink === null ? html`<code>${event.trace_id}</code>` : html`<a href="${traceLink}" rel="noreferrer"><code>${event.trace_id}</code></a>`
  }</dd></div>
</dl>`

/** The trace's address from `TRACE_UI_URL` (`{trace_id}` replaced, or the id appended). */
export const traceLinkOf = (template: Option.Option<string>, traceId: string | null) =>
  traceId === null || Option.isNone(template)
    ? null
    : template.value.includes("{trace_id}")
    ? template.value.replaceAll("{trace_id}", encodeURIComponent(traceId))
    : `${template.value}${encodeURIComponent(traceId)}`

export const eventsPages = {
  search: (incoming: Incoming) =>
    Effect.gen(function*() {
      const values = filled(new Map(incoming.query), FILTERS)
      const input = {
        ...values,
        ...(values["since"] === undefined ? {} : { since: asUtc(values["since"]) }),
        ...(values["until"] === undefined ? {} : { until: asUtc(values["until"]) })
      }
      const apps = yield* appChoices
      const decoded = decodeWithErrors(SearchFilter, input)
      const show = (errors: FieldErrors, results: ReturnType<typeof html> | null, status = 200) =>
        page(layout("Events", "events", html`${searchForm(values, errors, apps)}${results}`, incoming.context), status)
      if (!decoded.ok) return show(decoded.errors, null)
      const filter = decoded.value
      // An event id names one event: go straight to it.
      if (filter.event_id !== undefined) return seeOther(`${CONSOLE}/events/${filter.event_id}`)
      const cursor = incoming.query.get("cursor") ?? undefined
      const result = yield* (yield* Operations).webhookLogs({ ...filter, limit: EVENTS_PAGE, cursor }).pipe(
        reasons("InvalidFilter", "DatabaseUnavailable"),
        Effect.map((page) => ({ ok: true as const, page })),
        Effect.catchTag("InvalidFilter", (error) => Effect.succeed({ ok: false as const, detail: issuesText(error) }))
      )
      if (!result.ok) return show({ form: result.detail }, html`<p class="error">${result.detail}</p>`)
      const next = result.page.next_cursor === null
        ? null
        : `${CONSOLE}/events?${new URLSearchParams({ ...values, cursor: result.page.next_cursor })}`
      return show({}, html`<div class="scroll"><table id="events">
  <thead><tr><th scope="col">Received (UTC)</th><th scope="col">Status</th><th scope="col">Field</th><th scope="col">Account</th><th scope="col">Attempts</th><th scope="col">Payload</th></tr></thead>
  <tbody>${
        result.page.items.map((entry) =>
          html`<tr data-event="${entry.event_id}">
    <td><a href="${CONSOLE}/events/${entry.event_id}">${formatTime(entry.received_at)}</a></td>
    <td>${statusBadge(entry.status)}</td><td>${entry.field}</td><td>${entry.owner_id ?? entry.entry_id}</td>
    <td>${entry.attempts}</td><td class="summary"><code>${summary(entry)}</code></td>
  </tr>`
        )
      }</tbody>
</table></div>
${result.page.items.length === 0 ? html`<p>No event matches.</p>` : null}
<nav aria-label="Pages" class="pager">${cursor === undefined ? null : html`<a href="${CONSOLE}/events?${new URLSearchParams(values).toString()}">Newest</a>`}${
        next === null ? null : html`<a href="${next}" rel="next">Older</a>`
      }</nav>`)
    }).pipe(Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(errorPage(503, "Unavailable", "The database is unavailable.", incoming.context)))),

  detail: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = Schema.decodeUnknownOption(EventId)(incoming.params["id"])
      if (Option.isNone(id)) return errorPage(404, "Not found", "There is no such event.", incoming.context)
      const { traceUiUrl } = yield* AppConfig
      const event = yield* (yield* Operations).webhookLog(id.value).pipe(reasons("EventNotFound", "DatabaseUnavailable"))
      const context = withNotice(incoming.context, NOTICES, incoming.query.get("notice"))
      const payload = event.value === null
        ? html`<p>Postgres could not hold this value as JSON; <a href="${CONSOLE}/events/${event.event_id}/raw">its exact bytes</a> are what the worker app receives.</p>`
        : html`<pre id="payload" tabindex="0">${JSON.stringify(event.value, null, 2)}</pre>`
      return page(layout(`Event ${event.field}`, "events", html`${detailsList(event, traceLinkOf(traceUiUrl, event.trace_id))}
<section aria-labelledby="payload-title">
  <h2 id="payload-title">Payload</h2>
  ${payload}
  <p><a href="${CONSOLE}/events/${event.event_id}/raw">Exact bytes as received</a></p>
</section>
<section aria-labelledby="replay-title">
  <h2 id="replay-title">Replay</h2>
  <p>Delivers the event again to its worker app's queue (same event id, next attempt).</p>
  ${postButton(`${CONSOLE}/events/${event.event_id}/replay`, "Replay this event", context.csrf)}
</section>`, context))
    }).pipe(
      Effect.catchTag("EventNotFound", () => Effect.succeed(errorPage(404, "Not found", "There is no such event.", incoming.context))),
      Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(errorPage(503, "Unavailable", "The database is unavailable.", incoming.context)))
    ),

  /** The value's exact bytes, as text (never rendered as HTML). */
  raw: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = Schema.decodeUnknownOption(EventId)(incoming.params["id"])
      const raw = Option.isNone(id) ? undefined : yield* (yield* ConsoleStats).rawValue(id.value)
      if (raw === undefined) return errorPage(404, "Not found", "There is no such event.", incoming.context)
      return HttpServerResponse.text(raw, {
        contentType: "text/plain; charset=utf-8",
        headers: { ...SECURITY_HEADERS, "cache-control": "no-store" }
      })
    }).pipe(Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(errorPage(503, "Unavailable", "The database is unavailable.", incoming.context)))),

  replay: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = Schema.decodeUnknownOption(EventId)(incoming.params["id"])
      if (Option.isNone(id)) return errorPage(404, "Not found", "There is no such event.", incoming.context)
      const result = yield* (yield* Operations).replayOne(id.value).pipe(reasons("EventNotFound", "DatabaseUnavailable"))
      yield* audit("replay.requested", incoming.request, { event_id: id.value, ...result, via: "console" })
      return seeOther(`${CONSOLE}/events/${id.value}?notice=${result.queued > 0 ? "replayed" : "not-replayable"}`)
    }).pipe(
      Effect.catchTag("EventNotFound", () => Effect.succeed(errorPage(404, "Not found", "There is no such event.", incoming.context))),
      Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(errorPage(503, "Unavailable", "The database is unavailable.", incoming.context)))
    )
}
