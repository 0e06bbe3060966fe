import { Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { HttpApiSwagger } from "effect/http-api"
import { Api } from "./Api.ts"

// ReDoc renders the same /openapi.json as Swagger UI; the browser loads its script.
const redocPage = `<!doctype html>
<html>
  <head>
    <title>chatico-mapper API</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="https://cdn.redoc.ly/redoc/v2.5.0/bundles/redoc.standalone.js"></script>
  </body>
</html>`

export const DocsRoutes = Layer.mergeAll(
  HttpApiSwagger.layer(Api, { path: "/docs" }),
  HttpRouter.add("GET", "/redoc", HttpServerResponse.html(redocPage))
)
