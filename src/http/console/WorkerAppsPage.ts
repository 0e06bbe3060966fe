import { Effect, Option, Schema } from "effect"
import { type WorkerApp, WorkerAppCreate, WorkerAppId, WorkerAppUpdate } from "../../domain/WorkerApp.ts"
import { Broker } from "../../services/Broker.ts"
import { WorkerApps } from "../../services/WorkerApps.ts"
import { Router } from "../../streams/Router.ts"
import { AppConfig } from "../../services/AppConfig.ts"
import { audit } from "../Audit.ts"
import { appliedWith, declaringWith } from "../WorkerAppsHttp.ts"
import { decodeWithErrors, type FieldErrors } from "./Forms.ts"
import { errorPage, type Incoming, withNotice } from "./Handler.ts"
import { html, page, SafeHtml, seeOther } from "./Html.ts"
import { CONSOLE, csrfField, field, type PageContext, postButton, select, layout } from "./Layout.ts"

/** Worker apps on one page of the list. */
export const APPS_PAGE = 50

const NOTICES = { created: "Worker app created.", updated: "Worker app saved.", toggled: "Worker app switched.", deleted: "Worker app deleted." }

interface AppForm {
  readonly name: string
  readonly owner_id: string
  readonly queue_name: string
  readonly description: string
  readonly is_active: boolean
}

const fromForm = (form: ReadonlyMap<string, string>): AppForm => ({
  name: form.get("name") ?? "",
  owner_id: (form.get("owner_id") ?? "").trim(),
  queue_name: (form.get("queue_name") ?? "").trim(),
  description: form.get("description") ?? "",
  is_active: form.get("is_active") === "on"
})

const fromApp = (app: WorkerApp): AppForm => ({
  name: app.name,
  owner_id: app.owner_id,
  queue_name: app.queue_name,
  description: app.description ?? "",
  is_active: app.is_active
})

const payloadOf = (values: AppForm) => ({
  name: values.name,
  owner_id: values.owner_id,
  queue_name: values.queue_name,
  description: values.description.trim().length === 0 ? null : values.description,
  is_active: values.is_active
})

const appForm = (action: string, submit: string, values: AppForm, errors: FieldErrors, csrf: string) =>
  html`<form method="post" action="${action}" class="card" novalidate>
  ${csrfField(csrf)}
  ${errors["form"] === undefined ? null : html`<p class="error" role="alert">${errors["form"]}</p>`}
  ${field({ name: "name", label: "Name", value: values.name, error: errors["name"], required: true })}
  ${field({ name: "owner_id", label: "Instagram account id (owner_id)", value: values.owner_id, error: errors["owner_id"], required: true, hint: "Digits only, e.g. 17841400000000000", attributes: `inputmode="numeric"` })}
  ${field({ name: "queue_name", label: "RabbitMQ queue", value: values.queue_name, error: errors["queue_name"], required: true, hint: "A-Z, a-z, 0-9, '.', '_', ':' or '-'; not amq.* or chatico.*" })}
  ${field({ name: "description", label: "Description", value: values.description, error: errors["description"] })}
  <div class="field checkbox">
    <input id="f-is_active" name="is_active" type="checkbox"${new SafeHtml(values.is_active ? " checked" : "")}>
    <label for="f-is_active">Active (receives events)</label>
  </div>
  <button type="submit">${submit}</button>
</form>`

const formPage = (title: string, action: string, submit: string, values: AppForm, errors: FieldErrors, context: PageContext, status = 200) =>
  page(layout(title, "apps", appForm(action, submit, values, errors, context.csrf), context), status)

const appIdOf = (incoming: Incoming) => Schema.decodeUnknownOption(WorkerAppId)(incoming.params["id"])

const notFound = (context: PageContext) => errorPage(404, "Not found", "There is no such worker app.", context)
const unavailable = (context: PageContext) => errorPage(503, "Unavailable", "The database is unavailable: try again shortly.", context)

// The same audit line as the API's, marked as coming from the console.
const auditApp = (action: string, incoming: Incoming, app: WorkerApp) =>
  audit(action, incoming.request, {
    worker_app_id: app.id,
    name: app.name,
    owner_id: app.owner_id,
    queue_name: app.queue_name,
    is_active: app.is_active,
    via: "console"
  })

// UNROUTABLE_QUEUE may be named outside the reserved prefixes: no worker app may take it (as the API says).
const unroutableError = (values: AppForm) =>
  Effect.map(AppConfig, ({ unroutableQueue }): FieldErrors =>
    values.queue_name.toLowerCase() === unroutableQueue.toLowerCase()
      ? { queue_name: "is the queue of unroutable events (UNROUTABLE_QUEUE)" }
      : {})

const listPage = (incoming: Incoming) =>
  Effect.gen(function*() {
    const workerApps = yield* WorkerApps
    const active = incoming.query.get("is_active") ?? ""
    const owner = (incoming.query.get("owner_id") ?? "").trim()
    const offset = Math.max(0, Math.floor(Number(incoming.query.get("offset") ?? "0")) || 0)
    const ownerValid = owner === "" || /^[0-9]{1,32}$/.test(owner)
    const { items, total } = yield* workerApps.list({
      ...(active === "true" || active === "false" ? { is_active: active === "true" } : {}),
      ...(owner === "" || !ownerValid ? {} : { owner_id: owner }),
      limit: APPS_PAGE,
      offset
    })
    const more = (at: number) =>
      `${CONSOLE}/apps?${new URLSearchParams({ is_active: active, owner_id: owner, offset: String(at) })}`
    const context = withNotice(incoming.context, NOTICES, incoming.query.get("notice"))
    return page(layout("Worker apps", "apps", html`<p><a class="button" href="${CONSOLE}/apps/new">New worker app</a></p>
<form method="get" action="${CONSOLE}/apps" class="filters" role="search" aria-label="Filter worker apps">
  ${select("is_active", "Active", [["", "any"], ["true", "active"], ["false", "inactive"]], active)}
  ${field({ name: "owner_id", label: "Owner id", value: owner, error: ownerValid ? undefined : "must be a string of 1 to 32 digits" })}
  <button type="submit">Filter</button>
</form>
<p>${total} worker app${total === 1 ? "" : "s"}</p>
<div class="scroll"><table id="apps">
  <thead><tr><th scope="col">Name</th><th scope="col">Owner</th><th scope="col">Queue</th><th scope="col">Active</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>${
      items.map((app) =>
        html`<tr data-app="${app.id}">
    <td><a href="${CONSOLE}/apps/${app.id}">${app.name}</a></td><td>${app.owner_id}</td><td><code>${app.queue_name}</code></td>
    <td>${app.is_active ? "yes" : "no"}</td>
    <td class="actions">${postButton(`${CONSOLE}/apps/${app.id}/toggle`, app.is_active ? "Deactivate" : "Activate", context.csrf)}
      <a href="${CONSOLE}/apps/${app.id}/delete">Delete</a>
      <a href="${CONSOLE}/events?worker_app_id=${app.id}">Events</a></td>
  </tr>`
      )
    }</tbody>
</table></div>
<nav aria-label="Pages" class="pager">${offset > 0 ? html`<a href="${more(Math.max(0, offset - APPS_PAGE))}">Previous</a>` : null}${
      offset + items.length < total ? html`<a href="${more(offset + APPS_PAGE)}">Next</a>` : null
    }</nav>`, context))
  })

// A conflict names its field; "unavailable" is a page of its own.
const saveFailed = (
  error: { readonly reason: { readonly _tag: string; readonly detail: string; readonly field?: string } },
  retry: (errors: FieldErrors) => ReturnType<typeof formPage>,
  context: PageContext
) =>
  error.reason._tag === "WorkerAppConflict"
    ? retry({ [error.reason.field ?? "name"]: error.reason.detail })
    : error.reason._tag === "WorkerAppNotFound"
    ? notFound(context)
    : unavailable(context)

export const workerAppsPages = {
  list: (incoming: Incoming) => listPage(incoming).pipe(Effect.catch(() => Effect.succeed(unavailable(incoming.context)))),

  newForm: ({ context }: Incoming) =>
    Effect.succeed(formPage("New worker app", `${CONSOLE}/apps/new`, "Create", fromForm(new Map([["is_active", "on"]])), {}, context)),

  create: (incoming: Incoming) =>
    Effect.gen(function*() {
      const values = fromForm(incoming.form)
      const retry = (errors: FieldErrors) => formPage("New worker app", `${CONSOLE}/apps/new`, "Create", values, errors, incoming.context)
      const decoded = decodeWithErrors(WorkerAppCreate, payloadOf(values))
      if (!decoded.ok) return retry(decoded.errors)
      const reserved = yield* unroutableError(values)
      if (Object.keys(reserved).length > 0) return retry(reserved)
      const router = yield* Router
      return yield* (yield* WorkerApps).create(decoded.value, declaringWith(yield* Broker)).pipe(
        Effect.tap(() => router.refresh),
        Effect.tap((app) => auditApp("worker_app.created", incoming, app)),
        Effect.map(() => seeOther(`${CONSOLE}/apps?notice=created`)),
        Effect.catch((error) => Effect.succeed(saveFailed(error, retry, incoming.context)))
      )
    }),

  editForm: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = appIdOf(incoming)
      if (Option.isNone(id)) return notFound(incoming.context)
      return yield* (yield* WorkerApps).get(id.value).pipe(
        Effect.map((app) =>
          formPage(`Worker app ${app.name}`, `${CONSOLE}/apps/${app.id}`, "Save", fromApp(app), {}, withNotice(incoming.context, NOTICES, incoming.query.get("notice")))
        ),
        Effect.catch((error) => Effect.succeed(error.reason._tag === "WorkerAppNotFound" ? notFound(incoming.context) : unavailable(incoming.context)))
      )
    }),

  update: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = appIdOf(incoming)
      if (Option.isNone(id)) return notFound(incoming.context)
      const values = fromForm(incoming.form)
      const retry = (errors: FieldErrors) => formPage("Edit worker app", `${CONSOLE}/apps/${id.value}`, "Save", values, errors, incoming.context)
      const decoded = decodeWithErrors(WorkerAppUpdate, payloadOf(values))
      if (!decoded.ok) return retry(decoded.errors)
      const reserved = yield* unroutableError(values)
      if (Object.keys(reserved).length > 0) return retry(reserved)
      const router = yield* Router
      return yield* (yield* WorkerApps).update(id.value, decoded.value, declaringWith(yield* Broker)).pipe(
        Effect.tap(() => router.refresh),
        Effect.tap((app) => auditApp("worker_app.updated", incoming, app)),
        Effect.map((app) => seeOther(`${CONSOLE}/apps/${app.id}?notice=updated`)),
        Effect.catch((error) => Effect.succeed(saveFailed(error, retry, incoming.context)))
      )
    }),

  toggle: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = appIdOf(incoming)
      if (Option.isNone(id)) return notFound(incoming.context)
      const applied = appliedWith(yield* Broker, yield* Router)
      return yield* (yield* WorkerApps).toggle(id.value).pipe(
        Effect.flatMap(applied),
        Effect.tap((app) => auditApp("worker_app.toggled", incoming, app)),
        Effect.map(() => seeOther(`${CONSOLE}/apps?notice=toggled`)),
        Effect.catch((error) => Effect.succeed(error.reason._tag === "WorkerAppNotFound" ? notFound(incoming.context) : unavailable(incoming.context)))
      )
    }),

  confirmDelete: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = appIdOf(incoming)
      if (Option.isNone(id)) return notFound(incoming.context)
      return yield* (yield* WorkerApps).get(id.value).pipe(
        Effect.map((app) =>
          page(layout(`Delete ${app.name}?`, "apps", html`<div class="card">
  <p>Later events for account <strong>${app.owner_id}</strong> will be <em>unroutable</em>. The queue <code>${app.queue_name}</code> and its messages are kept.</p>
  <form method="post" action="${CONSOLE}/apps/${app.id}/delete" class="inline">${csrfField(incoming.context.csrf)}<button type="submit" class="danger">Delete worker app</button></form>
  <a href="${CONSOLE}/apps">Cancel</a>
</div>`, incoming.context))
        ),
        Effect.catch((error) => Effect.succeed(error.reason._tag === "WorkerAppNotFound" ? notFound(incoming.context) : unavailable(incoming.context)))
      )
    }),

  remove: (incoming: Incoming) =>
    Effect.gen(function*() {
      const id = appIdOf(incoming)
      if (Option.isNone(id)) return notFound(incoming.context)
      const router = yield* Router
      return yield* (yield* WorkerApps).remove(id.value).pipe(
        Effect.andThen(router.refresh),
        Effect.tap(() => audit("worker_app.deleted", incoming.request, { worker_app_id: id.value, via: "console" })),
        Effect.map(() => seeOther(`${CONSOLE}/apps?notice=deleted`)),
        Effect.catch((error) => Effect.succeed(error.reason._tag === "WorkerAppNotFound" ? notFound(incoming.context) : unavailable(incoming.context)))
      )
    })
}
