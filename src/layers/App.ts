import { Layer } from "effect"
import { HttpServerLive } from "../http/Server.ts"
import { Broker } from "../services/Broker.ts"
import { SignatureVerifier } from "../services/SignatureVerifier.ts"
import { WorkerApps } from "../services/WorkerApps.ts"
import { Journal } from "../streams/Journal.ts"
import { Delivery } from "../streams/Publish.ts"
import { RecoverLive } from "../streams/Recover.ts"
import { RetentionLive } from "../streams/Retention.ts"
import { Operations } from "../services/Operations.ts"
import { Router } from "../streams/Route.ts"
import { AppConfig } from "./Config.ts"
import { LoggingLive } from "./Logging.ts"
import { ObservabilityLive } from "./Observability.ts"
import { Database } from "./Sql.ts"

/**
 * The delivery pipeline behind the HTTP server: journal → route → publish,
 * plus recovery. Built before the server and released after it, so shutdown
 * stops accepting first, then drains each stage in order.
 */
export const PipelineLive = Layer.mergeAll(Journal.layer, RecoverLive, RetentionLive, Operations.layer).pipe(
  Layer.provideMerge(Delivery.layer),
  Layer.provideMerge(Router.layer),
  Layer.provideMerge(Layer.mergeAll(Broker.layer, SignatureVerifier.layer))
)

/** The whole service, given its configuration and tracing (tests supply their own). */
export const appWith = <E>(observability: Layer.Layer<never, E>) =>
  HttpServerLive.pipe(
    Layer.provide(PipelineLive),
    Layer.provideMerge(WorkerApps.layerNoDeps),
    Layer.provideMerge(Database.layer),
    Layer.provide(LoggingLive),
    Layer.provide(observability)
  )

export const AppNoConfig = appWith(ObservabilityLive)

/** The whole service, configured from the environment. */
export const AppLive = AppNoConfig.pipe(Layer.provideMerge(AppConfig.layer))
