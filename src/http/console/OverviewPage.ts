import { Clock, Effect } from "effect"
import type { Incoming } from "./Handler.ts"
import { HealthChecks } from "../HealthHttp.ts"
import { Operations, reasons } from "../../services/Operations.ts"
import { fragment, html, jsonData, page, SafeHtml } from "./Html.ts"
import { CONSOLE, layout } from "./Layout.ts"
import { type Backlog, ConsoleStats, type MinuteCounts, OUTCOMES } from "./Stats.ts"
import { errorPage } from "./Handler.ts"

/** How often the health and backlog panel refreshes itself (htmx). */
export const LIVE_REFRESH = "every 15s"

const CHECK_LABELS: Readonly<Record<string, string>> = {
  database: "Database",
  rabbitmq: "RabbitMQ",
  graph_api: "Graph API",
  pipeline: "Pipeline",
  backlog: "Pending events"
}

const age = (oldest: Date | null, now: number) => {
  if (oldest === null) return "none pending"
  const seconds = Math.max(0, Math.round((now - oldest.getTime()) / 1000))
  if (seconds < 120) return `${seconds} s`
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`
  return `${Math.round(seconds / 3600)} h`
}

type Checks = Readonly<Record<string, { readonly ok: boolean; readonly error?: string; readonly warning?: string }>>

const livePanel = (checks: Checks, backlog: Backlog, now: number) =>
  html`<section id="live" aria-labelledby="health-title" hx-get="${CONSOLE}/overview/live" hx-trigger="${LIVE_REFRESH}" hx-swap="outerHTML">
  <h2 id="health-title">Health</h2>
  <ul class="checks">${
    Object.entries(checks).map(([name, check]) =>
      html`<li class="check ${check.ok ? "ok" : "failing"}" data-check="${name}">
      <span class="check-name">${CHECK_LABELS[name] ?? name}</span>
      <span class="badge">${check.ok ? "ok" : "failing"}</span>
      ${check.error === undefined ? null : html`<span class="check-error">${check.error}</span>`}
      ${check.warning === undefined ? null : html`<span class="check-warning">${check.warning}</span>`}
    </li>`
    )
  }</ul>
  <h2>Backlog</h2>
  <dl class="stats">
    <div><dt>Pending events</dt><dd id="pending-count">${backlog.pending}</dd></div>
    <div><dt>Oldest pending</dt><dd id="pending-age">${age(backlog.oldest, now)}</dd></div>
  </dl>
</section>`

const chart = (minutes: ReadonlyArray<MinuteCounts>) => {
  const busy = minutes.filter((m) => OUTCOMES.some((o) => m.counts[o] > 0))
  return html`<section aria-labelledby="chart-title">
  <h2 id="chart-title">Events per minute, last hour</h2>
  <figure>
    <div id="chart" class="chart" role="img" aria-label="Events per minute over the last hour, by outcome; the table below has the numbers"></div>
    <script type="application/json" id="chart-data">${jsonData({ outcomes: OUTCOMES, minutes })}</script>
    <figcaption>
      <details>
        <summary>Minutes with traffic (${busy.length})</summary>
        <div class="scroll"><table id="chart-table">
          <thead><tr><th scope="col">Minute (UTC)</th>${OUTCOMES.map((o) => html`<th scope="col">${o.replace("_", " ")}</th>`)}</tr></thead>
          <tbody>${
    busy.map((m) =>
      html`<tr><td>${new Date(m.minute * 1000).toISOString().slice(11, 16)}</td>${OUTCOMES.map((o) => html`<td>${m.counts[o]}</td>`)}</tr>`
    )
  }</tbody>
        </table></div>
      </details>
    </figcaption>
  </figure>
</section>`
}

const counts = (value: { readonly messages: number; readonly consumers: number } | null) =>
  value === null ? { messages: "—", consumers: "—" } : value

/** Worker apps shown on the overview (the queue counts cost two broker calls each). */
export const OVERVIEW_APPS = 500

export const overviewPages = {
  show: ({ context }: Incoming) =>
    Effect.gen(function*() {
      const stats = yield* ConsoleStats
      const operations = yield* Operations
      const [health, minutes, backlog, routed, queues] = yield* Effect.all([
        (yield* HealthChecks).run,
        stats.throughput,
        stats.backlog,
        stats.routedLastHour,
        operations.queues({ limit: OVERVIEW_APPS, offset: 0 }).pipe(reasons("DatabaseUnavailable"))
      ], { concurrency: 5 })
      const now = yield* Clock.currentTimeMillis
      const apps = html`<section aria-labelledby="apps-title">
  <h2 id="apps-title">Worker apps</h2>
  ${queues.broker_error === null ? null : html`<p class="error">RabbitMQ: ${queues.broker_error}</p>`}
  ${queues.total > queues.items.length ? html`<p>The first ${queues.items.length} of ${queues.total} worker apps; <a href="${CONSOLE}/apps">all of them</a>.</p>` : null}
  <div class="scroll"><table id="app-table">
    <thead><tr><th scope="col">Name</th><th scope="col">Owner</th><th scope="col">Routed, last hour</th><th scope="col">Ready</th><th scope="col">Consumers</th><th scope="col">Dead letters</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${
        queues.items.map((item) => {
          const dead = item.dead_letter_queue?.messages ?? 0
          return html`<tr data-app="${item.worker_app_id}">
      <td><a href="${CONSOLE}/apps/${item.worker_app_id}">${item.name}</a>${item.is_active ? null : html` <span class="badge muted">inactive</span>`}</td>
      <td>${item.owner_id}</td>
      <td>${routed.get(item.worker_app_id) ?? 0}</td>
      <td>${counts(item.queue).messages}</td>
      <td>${counts(item.queue).consumers}</td>
      <td${new SafeHtml(dead > 0 ? ` class="alert"` : "")}>${counts(item.dead_letter_queue).messages}</td>
      <td><a href="${CONSOLE}/replay?status=dead_lettered&amp;worker_app_id=${item.worker_app_id}&amp;preview=1">Replay dead letters</a></td>
    </tr>`
        })
      }</tbody>
  </table></div>
  ${queues.items.length === 0 ? html`<p>No worker app yet. <a href="${CONSOLE}/apps/new">Create one</a>.</p>` : null}
</section>`
      return page(layout(
        "Overview",
        "overview",
        html`${livePanel(health.checks, backlog, now)}${chart(minutes)}${apps}`,
        context,
        [`${CONSOLE}/assets/htmx.min.js`, `${CONSOLE}/assets/uPlot.iife.min.js`, `${CONSOLE}/assets/console.js`]
      ))
    }).pipe(Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(errorPage(503, "Unavailable", "The database is unavailable.", context)))),

  /** The health and backlog panel alone, for htmx's refresh. */
  live: ({ context }: Incoming) =>
    Effect.gen(function*() {
      const stats = yield* ConsoleStats
      const [health, backlog] = yield* Effect.all([(yield* HealthChecks).run, stats.backlog], { concurrency: 2 })
      const now = yield* Clock.currentTimeMillis
      return fragment(livePanel(health.checks, backlog, now))
    }).pipe(Effect.catchTag("DatabaseUnavailable", () => Effect.succeed(errorPage(503, "Unavailable", "The database is unavailable.", context))))
}
