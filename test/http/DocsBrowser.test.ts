import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { chromium } from "playwright-core"
import { CHROMIUM, LAUNCH_ARGS } from "../support/Browser.ts"
import { TestApp } from "../support/TestApp.ts"

const browser = Effect.acquireRelease(
  Effect.promise(() => chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS, headless: true })),
  (launched) => Effect.promise(() => launched.close())
)

/**
 * Opens `path` with every request that is not to the service blocked (as on a
 * machine with no network beyond it) and waits until `rendered` shows.
 */
const openOffline = (path: string, rendered: string) =>
  Effect.gen(function*() {
    const app = yield* TestApp
    const chrome = yield* browser
    return yield* Effect.promise(async () => {
      const page = await chrome.newPage()
      const elsewhere: Array<string> = []
      await page.route("**/*", (route) => {
        const url = new URL(route.request().url())
        if (url.hostname === "127.0.0.1") return route.continue()
        elsewhere.push(url.href)
        return route.abort("internetdisconnected")
      })
      try {
        await page.goto(`${app.baseUrl}${path}`, { waitUntil: "load" })
        await page.getByText(rendered).first().waitFor({ state: "visible", timeout: 20_000 })
        return { elsewhere, text: await page.innerText("body") }
      } finally {
        await page.close()
      }
    })
  }).pipe(Effect.scoped)

layer(TestApp.layer("docs_browser"), { excludeTestServices: true, timeout: "90 seconds" })("the docs in a browser, offline", (it) => {
  it.effect("/docs (Swagger UI) renders every group's operations with no request beyond the service", () =>
    Effect.gen(function*() {
      const { elsewhere, text } = yield* openOffline("/docs", "/worker-apps/{id}/toggle")
      assert.deepStrictEqual(elsewhere, [])
      for (const expected of ["/webhook", "/monitoring/webhook-logs/{event_id}", "/monitoring/health"]) assert.include(text, expected)
    }))

  it.effect("/redoc renders the operations from the bundle the service serves, with no request beyond it", () =>
    Effect.gen(function*() {
      const { elsewhere, text } = yield* openOffline("/redoc", "Worker apps")
      assert.deepStrictEqual(elsewhere, [])
      assert.include(text, "/worker-apps/{id}/toggle")
      assert.include(text, "/monitoring/webhook-logs/{event_id}")
    }))
})
