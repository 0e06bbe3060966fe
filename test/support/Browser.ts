import { assert } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { mkdirSync } from "node:fs"
import { type Browser as PlaywrightBrowser, type BrowserContext, chromium, type Page } from "playwright-core"

/** Debian's chromium: never a browser downloaded by Playwright. */
export const CHROMIUM = "/usr/bin/chromium"
export const LAUNCH_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // As if air-gapped: no name resolves, so nothing but the loopback service can be reached.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
]
export const DESKTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }
export const SCREENSHOTS = new URL("../../docs/console/", import.meta.url)

/** What the browser did that a test must see: requests beyond 127.0.0.1, console errors, page errors, dialogs. */
export interface Watch {
  readonly offsite: Array<string>
  readonly consoleErrors: Array<string>
  readonly dialogs: Array<string>
}

/** One headless chromium with one context per test file; every request is intercepted. */
export class Browser extends Context.Service<Browser, {
  readonly context: BrowserContext
  readonly page: Page
  readonly watch: Watch
  /** A second page at a phone's size, sharing the session. */
  readonly phone: Effect.Effect<Page>
  readonly screenshot: (page: Page, name: string) => Effect.Effect<void>
}>()("test/Browser") {
  static readonly layer = Layer.effect(
    Browser,
    Effect.gen(function*() {
      const browser = yield* Effect.acquireRelease(
        Effect.promise((): Promise<PlaywrightBrowser> => chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS })),
        (b) => Effect.promise(() => b.close())
      )
      const context = yield* Effect.promise(() => browser.newContext({ viewport: DESKTOP }))
      const watch: Watch = { offsite: [], consoleErrors: [], dialogs: [] }
      yield* Effect.promise(() =>
        context.route("**/*", (route) => {
          const url = new URL(route.request().url())
          if (url.hostname === "127.0.0.1" && (url.protocol === "http:" || url.protocol === "ws:")) return route.continue()
          watch.offsite.push(url.href)
          return route.abort("blockedbyclient")
        })
      )
      const observe = (page: Page) => {
        page.on("console", (message) => {
          if (message.type() === "error") watch.consoleErrors.push(`${page.url()}: ${message.text()}`)
        })
        page.on("pageerror", (error) => watch.consoleErrors.push(`${page.url()}: ${error.message}`))
        page.on("dialog", (dialog) => {
          watch.dialogs.push(dialog.message())
          void dialog.dismiss()
        })
        return page
      }
      const page = observe(yield* Effect.promise(() => context.newPage()))
      mkdirSync(SCREENSHOTS, { recursive: true })
      return Browser.of({
        context,
        page,
        watch,
        phone: Effect.promise(async () => {
          const phone = observe(await context.newPage())
          await phone.setViewportSize(PHONE)
          return phone
        }),
        screenshot: (target, name) =>
          Effect.promise(() => target.screenshot({ path: new URL(`${name}.png`, SCREENSHOTS).pathname, fullPage: true })).pipe(Effect.asVoid)
      })
    })
  )
}

/** Evaluates a JavaScript expression in the page and returns its (JSON-serialisable) value. */
export const evaluate = (page: Page, expression: string) => Effect.promise((): Promise<unknown> => page.evaluate(expression))

/** Checks a page as every console page must be: clean console, nothing offsite, every input labelled. */
export const assertPageSound = (page: Page, watch: Watch) =>
  Effect.gen(function*() {
    assert.deepStrictEqual(watch.offsite, [], "requests left 127.0.0.1")
    assert.deepStrictEqual(watch.consoleErrors, [], "console errors")
    assert.deepStrictEqual(watch.dialogs, [], "a dialog opened (a script ran)")
    // Run in the page (as text: the tests are compiled without the DOM's types).
    const unlabelled = yield* evaluate(page, `[...document.querySelectorAll("input, select, textarea")]
      .filter((el) => el.type !== "hidden" && el.labels.length === 0).map((el) => el.outerHTML)`)
    assert.deepStrictEqual(unlabelled, [], `inputs without a label on ${page.url()}`)
    const overflow = yield* evaluate(page, "document.documentElement.scrollWidth - window.innerWidth")
    const wide = Number(overflow) > 0
      ? yield* evaluate(page, `[...document.querySelectorAll("body *")]
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
        .slice(0, 8).map((el) => el.tagName + "." + el.className + " " + Math.round(el.getBoundingClientRect().right))`)
      : []
    assert.isAtMost(Number(overflow), 0, `the page is wider than the viewport on ${page.url()}: ${JSON.stringify(wide)}`)
  })
