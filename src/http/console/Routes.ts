import { Clock, Effect, Layer } from "effect"
import { HttpRouter, type HttpServerRequest } from "effect/http"
import { AppConfig } from "../../services/AppConfig.ts"
import type { HealthChecks } from "../HealthHttp.ts"
import type { Database } from "../../services/Database.ts"
import type { Broker } from "../../services/Broker.ts"
import type { GraphApi } from "../../services/GraphApi.ts"
import type { Operations } from "../../services/Operations.ts"
import type { WorkerApps } from "../../services/WorkerApps.ts"
import type { Journal } from "../../streams/Journal.ts"
import type { Delivery } from "../../streams/Delivery.ts"
import type { Router } from "../../streams/Router.ts"
import { AssetRoutes } from "./Assets.ts"
import { eventsPages } from "./EventsPage.ts"
import { type ConsoleHandler, guarded } from "./Handler.ts"
import { CONSOLE } from "./Layout.ts"
import { loginPages } from "./LoginPage.ts"
import { overviewPages } from "./OverviewPage.ts"
import { replayPages } from "./ReplayPage.ts"
import { makeLoginThrottle, makeSessions } from "./Session.ts"
import { ConsoleStats } from "./Stats.ts"
import { workerAppsPages } from "./WorkerAppsPage.ts"

type ConsoleServices =
  | AppConfig
  | HealthChecks
  | ConsoleStats
  | Operations
  | WorkerApps
  | Broker
  | Router
  | Database
  | Journal
  | Delivery
  | GraphApi

/** The operator console under `/console`: server-rendered pages, signed in with `SECRET_KEY`. */
const PageRoutes = Layer.effectDiscard(Effect.gen(function*() {
  const router = yield* HttpRouter.HttpRouter
  const config = yield* AppConfig
  const context = yield* Effect.context<ConsoleServices>()
  const clock = yield* Clock.Clock
  const sessions = makeSessions(config.secretKey, clock)
  const login = loginPages(config.secretKey, sessions, makeLoginThrottle(clock))

  const route = (
    method: "GET" | "POST",
    path: string,
    handler: ConsoleHandler<ConsoleServices>,
    signedIn = true
  ) => {
    const wrapped = guarded(sessions, handler, { signedIn })
    return router.add(method, `${CONSOLE}${path}`, (request: HttpServerRequest.HttpServerRequest) =>
      Effect.provideContext(wrapped(request), context))
  }

  yield* route("GET", "/login", login.show, false)
  yield* route("POST", "/login", login.submit, false)
  yield* route("POST", "/logout", login.logout)

  yield* route("GET", "", overviewPages.show)
  yield* route("GET", "/overview/live", overviewPages.live)

  yield* route("GET", "/apps", workerAppsPages.list)
  yield* route("GET", "/apps/new", workerAppsPages.newForm)
  yield* route("POST", "/apps/new", workerAppsPages.create)
  yield* route("GET", "/apps/:id", workerAppsPages.editForm)
  yield* route("POST", "/apps/:id", workerAppsPages.update)
  yield* route("POST", "/apps/:id/toggle", workerAppsPages.toggle)
  yield* route("GET", "/apps/:id/delete", workerAppsPages.confirmDelete)
  yield* route("POST", "/apps/:id/delete", workerAppsPages.remove)

  yield* route("GET", "/events", eventsPages.search)
  yield* route("GET", "/events/:id", eventsPages.detail)
  yield* route("GET", "/events/:id/raw", eventsPages.raw)
  yield* route("POST", "/events/:id/replay", eventsPages.replay)

  yield* route("GET", "/replay", replayPages.form)
  yield* route("POST", "/replay", replayPages.confirm)
}))

export const ConsoleRoutes = Layer.mergeAll(PageRoutes, AssetRoutes).pipe(Layer.provide(ConsoleStats.layer))
