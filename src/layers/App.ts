import { Effect, Layer } from "effect"
import { HttpServer } from "effect/http"
import { HttpServerLive } from "../http/Server.ts"
import { Broker } from "../services/Broker.ts"
import { RateLimiter } from "../services/RateLimiter.ts"
import { RedisLink } from "../services/Redis.ts"
import { SignatureVerifier } from "../services/SignatureVerifier.ts"
import { WorkerApps } from "../services/WorkerApps.ts"
import { Journal } from "../streams/Journal.ts"
import { Delivery } from "../streams/Delivery.ts"
import { RecoveryLive } from "../streams/Recovery.ts"
import { RetentionLive } from "../streams/Retention.ts"
import { Operations } from "../services/Operations.ts"
import { MediaOwners } from "../services/MediaOwners.ts"
import { Router } from "../streams/Router.ts"
import { Lanes } from "../services/Lanes.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { LoggingLive } from "./Logging.ts"
import { ObservabilityLive } from "./Observability.ts"
import { Database } from "../services/Database.ts"
import { JournalStore } from "../services/JournalStore.ts"

/**
 * The delivery pipeline, built before the HTTP server and released after it, so shutdown stops
 * accepting first and then drains each stage in order.
 */
export const PipelineLive = Layer.mergeAll(Journal.layer, RecoveryLive, RetentionLive, Operations.layer).pipe(
  Layer.provideMerge(Delivery.layer),
  Layer.provideMerge(Router.layer),
  Layer.provideMerge(MediaOwners.layer),
  Layer.provideMerge(JournalStore.layer),
  Layer.provideMerge(Layer.mergeAll(Broker.layer, SignatureVerifier.layer, RateLimiter.layer, Lanes.layer, RedisLink.layer))
)

/**
 * Built after the HTTP server, so released before it: on shutdown webhooks are answered 503 at once
 * (Meta retries them) while requests in flight finish and the pipeline drains.
 */
const StopAcceptingFirst = Layer.effectDiscard(Effect.gen(function*() {
  yield* HttpServer.HttpServer
  const journal = yield* Journal
  yield* Effect.addFinalizer(() =>
    Effect.andThen(journal.stopAccepting, Effect.logInfo("shutting down: new webhooks are answered 503"))
  )
}))

/** The whole service, given its configuration and tracing (tests supply their own). */
export const appWith = <E>(observability: Layer.Layer<never, E>) =>
  StopAcceptingFirst.pipe(
    Layer.provideMerge(HttpServerLive),
    Layer.provideMerge(PipelineLive),
    Layer.provideMerge(WorkerApps.layerNoDeps),
    Layer.provideMerge(Database.layer),
    Layer.provide(LoggingLive),
    Layer.provide(observability)
  )

export const AppNoConfig = appWith(ObservabilityLive)

/** The whole service, configured from the environment. */
export const AppLive = AppNoConfig.pipe(Layer.provideMerge(AppConfig.layer))
