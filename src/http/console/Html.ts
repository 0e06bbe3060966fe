import { HttpServerResponse } from "effect/http"

/** Markup that is already escaped; everything else interpolated into `html` is escaped. */
export class SafeHtml {
  readonly markup: string
  constructor(markup: string) {
    this.markup = markup
  }
  toString() {
    return this.markup
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }

export const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c)

export type Fragment = SafeHtml | string | number | null | undefined | ReadonlyArray<Fragment>

const render = (value: Fragment): string => {
  if (value === null || value === undefined) return ""
  if (value instanceof SafeHtml) return value.markup
  if (Array.isArray(value)) return value.map(render).join("")
  return escapeHtml(String(value))
}

/** A template whose holes are escaped unless they are `SafeHtml` (or arrays of it). */
export const html = (strings: TemplateStringsArray, ...holes: ReadonlyArray<Fragment>): SafeHtml =>
  new SafeHtml(strings.reduce((out, part, i) => out + part + (i < holes.length ? render(holes[i]!) : ""), ""))

/** JSON for a `<script type="application/json">` block: `<` is escaped so no tag can close it. */
export const jsonData = (value: unknown) =>
  new SafeHtml(JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026"))

// No inline script or style anywhere: scripts, styles, images and requests come from this origin only.
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'"
].join("; ")

export const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin"
}

/**
 * A console page: never cached (it shows journaled messages), with the security headers.
 * A form shown again with its errors is a 200 (the errors are on the page), as form sites answer.
 */
export const page = (body: SafeHtml, status = 200) => fragment(new SafeHtml(`<!doctype html>\n${body.markup}`), status)

/** Part of a page, for htmx to swap in. */
export const fragment = (body: SafeHtml, status = 200) =>
  HttpServerResponse.text(body.markup, { contentType: "text/html; charset=utf-8" }).pipe(
    HttpServerResponse.setStatus(status),
    HttpServerResponse.setHeaders({ ...SECURITY_HEADERS, "cache-control": "no-store" })
  )

/** After a successful POST: the browser GETs `location` (so reloading does not repeat the action). */
export const seeOther = (location: string) =>
  HttpServerResponse.empty({ status: 303, headers: { location, ...SECURITY_HEADERS, "cache-control": "no-store" } })
