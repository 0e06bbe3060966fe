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

// The bundle names one remote resource, the sidebar footer's logo on Redocly's servers: every
// image under redoc.ly becomes an empty one, so the page never leaves the service.
const REMOTE_REDOC_ASSET = /https?:\/\/[a-z0-9.-]*redoc\.ly\/[^"'`\s)]*\.svg/g
const EMPTY_SVG = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"

// The bundle ships with the `redoc` package; it is read on the first request for it, so the routes
// are in place before the server listens (a route added after an awaited read left early requests unanswered).
let bundle: Promise<string> | undefined
const redocBundle = () => {
  bundle ??= readFile(createRequire(import.meta.url).resolve("redoc/bundles/redoc.standalone.js"), "utf8")
    .then((text) => text.replace(REMOTE_REDOC_ASSET, EMPTY_SVG))
  return bundle
}

const RedocRoutes = Layer.mergeAll(
  HttpRouter.add("GET", "/redoc", HttpServerResponse.html(redocPage)),
  HttpRouter.add(
    "GET",
    REDOC_SCRIPT_PATH,
    Effect.map(Effect.promise(redocBundle), (text) =>
      HttpServerResponse.text(text, {
        contentType: "application/javascript; charset=utf-8",
        headers: { "cache-control": "public, max-age=86400" }
      }))
  )
)

export const DocsRoutes = Layer.mergeAll(
  HttpApiSwagger.layer(Api, { path: "/docs" }),
  RedocRoutes,
  // As FastAPI apps commonly do: the root leads to the interactive docs.
  HttpRouter.add("GET", "/", HttpServerResponse.redirect("/docs", { status: 307 }))
)
