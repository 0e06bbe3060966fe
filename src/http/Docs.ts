import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { HttpApiSwagger } from "effect/http-api"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { Api } from "./Api.ts"

/** Where the page loads ReDoc from: this service, so the docs work with no network beyond it. */
export const REDOC_SCRIPT_PATH = "/redoc/redoc.standalone.js"

// ReDoc renders the same /openapi.json as Swagger UI.
const redocPage = `<!doctype html>
<html lang="en">
  <head>
    <title>chatico-mapper API</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="${REDOC_SCRIPT_PATH}"></script>
  </body>
</html>`

// The bundle's sidebar footer loads a logo from Redocly's CDN: an empty image instead keeps the page offline.
const CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
const EMPTY_SVG = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"

const RedocRoutes = HttpRouter.use(Effect.fnUntraced(function*(router) {
  // Read once at start-up, synchronously: an asynchronous gap here let the server answer before
  // every route was added, and requests in that window never got an answer.
  const bundlePath = createRequire(import.meta.url).resolve("redoc/bundles/redoc.standalone.js")
  const bundle = yield* Effect.sync(() => readFileSync(bundlePath, "utf8").replaceAll(CDN_LOGO, EMPTY_SVG))
  const script = HttpServerResponse.text(bundle, {
    contentType: "application/javascript; charset=utf-8",
    headers: { "cache-control": "public, max-age=86400" }
  })
  yield* router.add("GET", "/redoc", HttpServerResponse.html(redocPage))
  yield* router.add("GET", REDOC_SCRIPT_PATH, script)
}))

export const DocsRoutes = Layer.mergeAll(
  HttpApiSwagger.layer(Api, { path: "/docs" }),
  RedocRoutes,
  // As FastAPI apps commonly do: the root leads to the interactive docs.
  HttpRouter.add("GET", "/", HttpServerResponse.redirect("/docs", { status: 307 }))
)
