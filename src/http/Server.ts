import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HttpRouter } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { createServer } from "node:http"
import { AppConfig } from "../services/AppConfig.ts"
import { EventLoopSampler } from "../services/ProcessMetrics.ts"
import { Api } from "./Api.ts"
import { DocsRoutes } from "./Docs.ts"
import { EdgeLive } from "./Edge.ts"
import { GuardLive } from "./Guard.ts"
import { HealthChecks, HealthHttp } from "./HealthHttp.ts"
import { MonitoringHttp } from "./MonitoringHttp.ts"
import { AuthorizationLive, RequestValidationLive } from "./Middleware.ts"
import { WorkerAppsHttp } from "./WorkerAppsHttp.ts"
import { AcceptRoutes } from "../streams/Accept.ts"
import { ConsoleRoutes } from "./console/Routes.ts"

/** Node's own limits on slow or oversized clients (Meta sends a whole webhook in well under a second). */
export const HEADERS_TIMEOUT_MS = 10_000
export const REQUEST_TIMEOUT_MS = 15_000
/** How often Node looks for requests past those timeouts. */
export const TIMEOUT_CHECK_INTERVAL_MS = 1_000
export const KEEP_ALIVE_TIMEOUT_MS = 65_000
export const MAX_HEADER_BYTES = 16 * 1024
/** In-flight requests get this long after SIGTERM; the pipeline then drains (the whole exit stays under 10 s). */
export const GRACEFUL_SHUTDOWN = "3 seconds"

export const ApiRoutes = HttpApiBuilder.layer(Api, { openapiPath: "/openapi.json" }).pipe(
  Layer.provide([WorkerAppsHttp, HealthHttp, MonitoringHttp]),
  Layer.provide([AuthorizationLive, RequestValidationLive])
)

// The API's health and the console's overview share one set of checks.
export const AllRoutes = Layer.mergeAll(ApiRoutes, DocsRoutes, AcceptRoutes, ConsoleRoutes, GuardLive, EdgeLive, EventLoopSampler).pipe(
  Layer.provide(HealthChecks.layer)
)

const NodeServer = Layer.unwrap(Effect.gen(function*() {
  const { port, host } = yield* AppConfig
  return NodeHttpServer.layer(
    () =>
      createServer({
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
        connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
        maxHeaderSize: MAX_HEADER_BYTES
      }),
    { port, host, gracefulShutdownTimeout: GRACEFUL_SHUTDOWN }
  )
}))

/**
 * The HTTP server: every route answers with and without a trailing slash. Paths are otherwise
 * exact: `//webhook` or `/WEBHOOK` is a 404, never a webhook rate-limited and traced as something else.
 */
// effect's own request logger is off: `Edge.ts` writes the access log line.
export const HttpServerLive = HttpRouter.serve(AllRoutes, {
  routerConfig: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: false, caseSensitive: true },
  disableLogger: true
}).pipe(Layer.provideMerge(NodeServer))
