import { Layer } from "effect"
import { HttpServerLive } from "../http/Server.ts"
import { WorkerApps } from "../services/WorkerApps.ts"
import { AppConfig } from "./Config.ts"
import { LoggingLive } from "./Logging.ts"
import { Database } from "./Sql.ts"

/** The whole service, given its configuration (tests supply their own). */
export const AppNoConfig = HttpServerLive.pipe(
  Layer.provide(WorkerApps.layerNoDeps),
  Layer.provideMerge(Database.layer),
  Layer.provide(LoggingLive)
)

/** The whole service, configured from the environment. */
export const AppLive = AppNoConfig.pipe(Layer.provideMerge(AppConfig.layer))
