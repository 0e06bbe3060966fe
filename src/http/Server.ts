import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HttpRouter } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { IncomingMessage, type RequestListener, Server, type ServerOptions, ServerResponse } from "node:http"
import * as Net from "node:net"
import { AppConfig } from "../services/AppConfig.ts"
import { EventLoopSampler } from "../services/ProcessMetrics.ts"
import { Api } from "./Api.ts"
import { DocsRoutes } from "./Docs.ts"
import { EdgeLive } from "./Edge.ts"
import { Admission, GuardLive } from "./Guard.ts"
import { HealthChecks, HealthHttp } from "./HealthHttp.ts"
import { MonitoringHttp } from "./MonitoringHttp.ts"
import { AuthorizationLive, RequestValidationLive } from "./Middleware.ts"
import { WorkerAppsHttp } from "./WorkerAppsHttp.ts"
import { AcceptLive, VerifyRoutes, WebhookIntake } from "../streams/Accept.ts"
import { isWebhookPath, originForm } from "./WebhookPath.ts"
import { ConsoleRoutes } from "./console/Routes.ts"

/** Node's own limits on slow or oversized clients (Meta sends a whole webhook in well under a second). */
export const HEADERS_TIMEOUT_MS = 10_000
export const REQUEST_TIMEOUT_MS = 15_000
/** How often Node looks for requests past those timeouts. */
export const TIMEOUT_CHECK_INTERVAL_MS = 1_000
export const KEEP_ALIVE_TIMEOUT_MS = 65_000
export const MAX_HEADER_BYTES = 16 * 1024
/** Connections the kernel holds for us until accepted (Node's 511 overflows under a burst of new clients; Linux caps it at somaxconn). */
export const LISTEN_BACKLOG = 4096
/**
 * Listening sockets on the port (SO_REUSEPORT, Linux only). Node accepts one connection per
 * listening socket per event-loop turn, and a turn under load takes 100–500 ms, so with one
 * socket new clients waited in the kernel's queue until they timed out (README, "Performance").
 */
export const ACCEPTORS = 64
/** In-flight requests get this long after SIGTERM; the pipeline then drains (the whole exit stays under 10 s). */
export const GRACEFUL_SHUTDOWN = "3 seconds"

export const ApiRoutes = HttpApiBuilder.layer(Api, { openapiPath: "/openapi.json" }).pipe(
  Layer.provide([WorkerAppsHttp, HealthHttp, MonitoringHttp]),
  Layer.provide([AuthorizationLive, RequestValidationLive])
)

// The API's health and the console's overview share one set of checks.
export const AllRoutes = Layer.mergeAll(ApiRoutes, DocsRoutes, VerifyRoutes, ConsoleRoutes, GuardLive, EdgeLive, EventLoopSampler).pipe(
  Layer.provide(HealthChecks.layer)
)

// The extra listening sockets hand what they accept to the HTTP server, as if it had accepted it.
const extraAcceptors = (server: () => Server, host: string) =>
  Layer.effectDiscard(Effect.gen(function*() {
    const address = server().address()
    if (address === null || typeof address === "string") return
    for (let i = 1; i < ACCEPTORS; i++) {
      const acceptor = Net.createServer((socket) => server().emit("connection", socket))
      const opened = yield* Effect.callback<boolean>((resume) => {
        const failed = () => resume(Effect.succeed(false))
        acceptor.once("error", failed)
        acceptor.listen({ port: address.port, host, backlog: LISTEN_BACKLOG, reusePort: true }, () => {
          acceptor.off("error", failed)
          resume(Effect.succeed(true))
        })
      })
      // An error after listening (none is expected) closes this socket; the others go on.
      acceptor.on("error", () => acceptor.close())
      if (!opened) return yield* Effect.logWarning("an extra listening socket could not be opened; accepting on fewer")
        .pipe(Effect.annotateLogs({ opened: i }))
      yield* Effect.addFinalizer(() => Effect.sync(() => acceptor.close()))
    }
  }))

/**
 * Node's HTTP server, with each webhook POST (`/webhook`, `/webhook/`, with or without a query)
 * handed to the intake instead of effect's request handler: the one place the router is bypassed.
 * `checkContinue` is a request whose client waits on `Expect: 100-continue`.
 */
class WebhookServer extends Server {
  private readonly intake: RequestListener

  constructor(options: ServerOptions, intake: RequestListener) {
    super(options)
    this.intake = intake
  }

  override emit(event: string, ...args: Array<unknown>): boolean {
    if ((event === "request" || event === "checkContinue") && args.length === 2) {
      const [incoming, response] = args
      if (
        incoming instanceof IncomingMessage && response instanceof ServerResponse && incoming.method === "POST" &&
        incoming.url !== undefined && isWebhookPath(originForm(incoming.url))
      ) {
        this.intake(incoming, response)
        return true
      }
    }
    return super.emit(event, ...args)
  }
}

const NodeServer = Layer.unwrap(Effect.gen(function*() {
  const { port, host } = yield* AppConfig
  const { handle } = yield* WebhookIntake
  const shared = process.platform === "linux"
  let server: Server | undefined
  const listening = NodeHttpServer.layer(
    () =>
      (server = new WebhookServer({
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
        connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
        maxHeaderSize: MAX_HEADER_BYTES
      }, handle)),
    { port, host, backlog: LISTEN_BACKLOG, reusePort: shared, gracefulShutdownTimeout: GRACEFUL_SHUTDOWN }
  )
  return shared ? Layer.provideMerge(extraAcceptors(() => server!, host), listening) : listening
}))

/**
 * The HTTP server: every route answers with and without a trailing slash. Paths are otherwise
 * exact: `//webhook` or `/WEBHOOK` is a 404, never a webhook rate-limited and traced as something else.
 */
// effect's own request logger is off: `Edge.ts` writes the access log line.
export const HttpServerLive = HttpRouter.serve(AllRoutes, {
  routerConfig: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: false, caseSensitive: true },
  disableLogger: true
}).pipe(
  Layer.provideMerge(NodeServer),
  Layer.provide(AcceptLive),
  Layer.provideMerge(Admission.layer)
)
