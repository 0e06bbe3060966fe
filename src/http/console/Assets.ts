import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { SECURITY_HEADERS } from "./Html.ts"
import { CONSOLE } from "./Layout.ts"

const require = createRequire(import.meta.url)
const own = (name: string) => new URL(`./assets/${name}`, import.meta.url)

/** Browsers may keep an asset this long; its ETag tells them when it changed. */
export const ASSET_MAX_AGE_SECONDS = 3600

// Served from the installed npm packages and this folder: nothing is fetched from elsewhere.
const ASSETS: ReadonlyArray<readonly [string, string | URL, string]> = [
  ["htmx.min.js", require.resolve("htmx.org/dist/htmx.min.js"), "text/javascript; charset=utf-8"],
  ["uPlot.iife.min.js", require.resolve("uplot/dist/uPlot.iife.min.js"), "text/javascript; charset=utf-8"],
  ["uPlot.min.css", require.resolve("uplot/dist/uPlot.min.css"), "text/css; charset=utf-8"],
  ["console.js", own("console.js"), "text/javascript; charset=utf-8"],
  ["console.css", own("console.css"), "text/css; charset=utf-8"],
  ["favicon.svg", own("favicon.svg"), "image/svg+xml"]
]

/** `GET /console/assets/<name>`: read once at start-up, answered from memory. */
export const AssetRoutes = Layer.effectDiscard(Effect.gen(function*() {
  const router = yield* HttpRouter.HttpRouter
  for (const [name, path, contentType] of ASSETS) {
    const body = readFileSync(path)
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`
    const headers = { ...SECURITY_HEADERS, etag, "cache-control": `public, max-age=${ASSET_MAX_AGE_SECONDS}` }
    yield* router.add("GET", `${CONSOLE}/assets/${name}`, (request) =>
      Effect.succeed(
        request.headers["if-none-match"] === etag
          ? HttpServerResponse.empty({ status: 304, headers })
          : HttpServerResponse.uint8Array(body, { contentType, headers })
      ))
  }
}))
