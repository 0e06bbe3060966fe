import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { HttpApiSwagger } from "effect/http-api"
import { readFile } from "node:fs/promises"
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

const RedocRoutes = HttpRouter.use(Effect.fnUntraced(function*(router) {
  // Read once at start-up: the bundle ships with the `redoc` package.
  const bundlePath = createRequire(import.meta.url).resolve("redoc/bundles/redoc.standalone.js")
  const bundle = yield* Effect.promise(() => readFile(bundlePath, "utf8"))
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
