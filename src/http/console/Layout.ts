import { type Fragment, html, SafeHtml } from "./Html.ts"

export const CONSOLE = "/console"

export type Section = "overview" | "apps" | "events" | "replay" | "login"

/** What every signed-in page needs: the CSRF token for its forms. */
export interface PageContext {
  readonly csrf: string
  readonly notice?: string | undefined
}

const NAV: ReadonlyArray<readonly [Exclude<Section, "login">, string, string]> = [
  ["overview", "Overview", `${CONSOLE}`],
  ["apps", "Worker apps", `${CONSOLE}/apps`],
  ["events", "Events", `${CONSOLE}/events`],
  ["replay", "Replay", `${CONSOLE}/replay`]
]

// htmx may not evaluate code from attributes nor insert its own <style> (the CSP forbids both).
const HTMX_CONFIG = JSON.stringify({
  allowEval: false,
  allowScriptTags: false,
  includeIndicatorStyles: false,
  selfRequestsOnly: true,
  historyCacheSize: 0
})

/** The hidden CSRF field every state-changing form carries. */
export const csrfField = (csrf: string) => html`<input type="hidden" name="_csrf" value="${csrf}">`

/** A one-button POST form (toggle, replay, sign out…). */
export const postButton = (action: string, label: string, csrf: string, extra: Fragment = null, className = "") =>
  html`<form method="post" action="${action}" class="inline">${csrfField(csrf)}${extra}<button type="submit"${
    new SafeHtml(className === "" ? "" : ` class="${className}"`)
  }>${label}</button></form>`

export const layout = (
  title: string,
  section: Section,
  content: SafeHtml,
  context?: PageContext,
  scripts: ReadonlyArray<string> = []
) =>
  html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="htmx-config" content="${HTMX_CONFIG}">
<title>${title} · chatico-mapper console</title>
<link rel="icon" href="${CONSOLE}/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${CONSOLE}/assets/console.css">
${scripts.map((src) => html`<script src="${src}" defer></script>\n`)}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <span class="brand">chatico-mapper</span>
  ${
    context === undefined ? null : html`<nav aria-label="Console">
    <ul>${
      NAV.map(([key, label, href]) =>
        html`<li><a href="${href}"${new SafeHtml(key === section ? ` aria-current="page"` : "")}>${label}</a></li>`
      )
    }</ul>
  </nav>
  ${postButton(`${CONSOLE}/logout`, "Sign out", context.csrf, null, "link")}`
  }
</header>
<main id="main" tabindex="-1">
<h1>${title}</h1>
${context?.notice === undefined ? null : html`<p class="notice" role="status">${context.notice}</p>`}
${content}
</main>
</body>
</html>`

/** A labelled input with its error (from the API's validation) shown next to it. */
export const field = (options: {
  readonly name: string
  readonly label: string
  readonly value?: string | undefined
  readonly error?: string | undefined
  readonly type?: string
  readonly required?: boolean
  readonly hint?: string
  readonly attributes?: string
}) => {
  const id = `f-${options.name}`
  const described = [options.hint === undefined ? "" : `${id}-hint`, options.error === undefined ? "" : `${id}-error`]
    .filter((s) => s.length > 0).join(" ")
  return html`<div class="field${options.error === undefined ? "" : " invalid"}">
  <label for="${id}">${options.label}</label>
  <input id="${id}" name="${options.name}" type="${options.type ?? "text"}" value="${options.value ?? ""}"${
    new SafeHtml(
      (options.required === true ? " required" : "") +
        (options.error === undefined ? "" : ` aria-invalid="true"`) +
        (described === "" ? "" : ` aria-describedby="${described}"`) +
        (options.attributes === undefined ? "" : ` ${options.attributes}`)
    )
  }>
  ${options.hint === undefined ? null : html`<small id="${id}-hint">${options.hint}</small>`}
  ${options.error === undefined ? null : html`<p class="error" id="${id}-error">${options.error}</p>`}
</div>`
}

/** A labelled `<select>`; `choices` are `[value, label]`. */
export const select = (
  name: string,
  label: string,
  choices: ReadonlyArray<readonly [string, string]>,
  selected: string | undefined
) =>
  html`<div class="field">
  <label for="f-${name}">${label}</label>
  <select id="f-${name}" name="${name}">${
    choices.map(([value, text]) =>
      html`<option value="${value}"${new SafeHtml(value === (selected ?? "") ? " selected" : "")}>${text}</option>`
    )
  }</select>
</div>`

export const formatTime = (iso: string | null) => (iso === null ? "—" : iso.replace("T", " ").replace(/\.\d+Z$/, "Z"))
