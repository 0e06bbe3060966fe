import { Config, Context, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import * as Runtime from "effect/Runtime"

/**
 * A required variable that is absent (or empty) in production. Its message is
 * the one line start-up prints before exiting.
 */
export class MissingConfig extends Schema.TaggedError<MissingConfig>()("MissingConfig", {
  variable: Schema.String,
  hint: Schema.String
}) {
  override readonly [Runtime.errorReported] = false
  override get message() {
    return `missing required environment variable ${this.variable}: ${this.hint}`
  }
}

export type OwnerResolution = "auto" | "entry" | "graph"
export type QueueType = "quorum" | "classic"

export interface AppConfigShape {
  readonly production: boolean
  readonly port: number
  readonly host: string
  readonly databaseUrl: Redacted.Redacted<string>
  readonly rabbitmqUrl: Redacted.Redacted<string>
  readonly instagramAppId: Option.Option<string>
  readonly instagramAppSecret: Redacted.Redacted<string>
  /** Every key a `X-Hub-Signature-256` may be made with (for rotation, one match is enough). */
  readonly webhookSecrets: ReadonlyArray<Redacted.Redacted<string>>
  readonly webhookVerifyToken: Redacted.Redacted<string>
  readonly instagramAccessToken: Option.Option<Redacted.Redacted<string>>
  readonly secretKey: Redacted.Redacted<string>
  readonly graphApiUrl: string
  readonly ownerResolution: OwnerResolution
  readonly maxBodyBytes: number
  readonly logLevel: "Debug" | "Info" | "Warn" | "Error"
  readonly queueType: QueueType
  /** How long journaled events belong to the instance that wrote or claimed them before recovery may take them. */
  readonly deliveryLease: Duration.Duration
  /** How often the recovery sweeper looks for pending events. */
  readonly sweepInterval: Duration.Duration
  /** Finished events older than this are deleted from the journal. */
  readonly journalRetention: Duration.Duration
  /** Graph API calls started per second at most (the token bucket's rate; lowered while Meta's usage headers pass 75 %). */
  readonly graphCallsPerSecond: number
  /** Graph API calls that may start back to back after a quiet spell (the token bucket's size). */
  readonly graphBurst: number
  /** Time limit of one Graph API call, body included. */
  readonly graphTimeout: Duration.Duration
  /** First pause after a throttling error without `estimated_time_to_regain_access`; doubles while throttling repeats. */
  readonly graphThrottlePause: Duration.Duration
  /** Failed owner lookups in a row that open the circuit breaker. */
  readonly graphCircuitThreshold: number
  /** How long an open circuit (or a rejected token) stops calls before one probe call is let through. */
  readonly graphCircuitCooldown: Duration.Duration
  /** Media owners kept in memory (least recently used dropped first); the `media_owners` table keeps them all. */
  readonly graphCacheSize: number
  /** How long a media with no owner or a permanent Graph API error is not asked again. */
  readonly graphPermanentFailureTtl: Duration.Duration
  /** Requests per second one client may make to `/webhook` (bursts of twice that); 0 = no limit. */
  readonly rateLimitWebhook: number
  /** Requests per second one client may make to the admin and monitoring API; 0 = no limit. */
  readonly rateLimitAdmin: number
  /** Largest JSON body the admin API reads. */
  readonly maxAdminBodyBytes: number
  /** Webhook requests folded into one journal write at most. */
  readonly journalBatchRequests: number
  /** How long a journal write waits for more webhooks to join it; 0 = write what is queued at once. */
  readonly journalBatchWindow: Duration.Duration
  /** The console's link to a trace: `{trace_id}` is replaced by the event's trace id (appended when absent). */
  readonly traceUiUrl: Option.Option<string>
}

// Development defaults let `npm start` run on a fresh machine with no `.env`;
// in production (NODE_ENV=production) these variables must be set.
const devDefaults = {
  INSTAGRAM_APP_SECRET: "dev-app-secret",
  WEBHOOK_VERIFY_TOKEN: "dev-verify-token",
  SECRET_KEY: "dev-secret-key"
} as const

const optionalString = (name: string) =>
  Config.String(name).pipe(
    Config.option,
    Config.map(Option.filter((value) => value.trim().length > 0))
  )

const requiredSecret = (name: keyof typeof devDefaults, production: boolean, hint: string) =>
  Effect.flatMap(optionalString(name), (value) => {
    if (Option.isSome(value)) return Effect.succeed(Redacted.make(value.value, { label: name }))
    if (production) return Effect.fail(new MissingConfig({ variable: name, hint }))
    return Effect.as(
      Effect.logWarning(`${name} is not set: using the development default (never do this in production)`),
      Redacted.make<string>(devDefaults[name], { label: name })
    )
  })

const logLevels = { debug: "Debug", info: "Info", warn: "Warn", error: "Error" } as const

const load = Effect.gen(function*() {
  const production = (yield* optionalString("NODE_ENV").pipe(Config.map(Option.getOrElse(() => "development")))) ===
    "production"
  const port = yield* Config.Port("PORT").pipe(Config.withDefault(8000))
  const host = yield* Config.String("HOST").pipe(Config.withDefault("0.0.0.0"))
  const databaseUrl = yield* Config.Redacted("DATABASE_URL").pipe(
    Config.withDefault(Redacted.make("postgres://postgres@127.0.0.1:5432/chatico_mapper"))
  )
  const rabbitmqUrl = yield* Config.Redacted("RABBITMQ_URL").pipe(
    Config.withDefault(Redacted.make("amqp://guest:guest@127.0.0.1:5672"))
  )
  const instagramAppId = yield* optionalString("INSTAGRAM_APP_ID")
  if (production && Option.isNone(instagramAppId)) {
    return yield* new MissingConfig({ variable: "INSTAGRAM_APP_ID", hint: "the Meta app id" })
  }
  const instagramAppSecret = yield* requiredSecret(
    "INSTAGRAM_APP_SECRET",
    production,
    "the Meta app secret, the key of X-Hub-Signature-256"
  )
  const webhookSecretList = yield* optionalString("WEBHOOK_SECRET")
  const webhookSecrets = Option.match(webhookSecretList, {
    onNone: () => [instagramAppSecret],
    onSome: (list) =>
      list.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map((s) =>
        Redacted.make(s, { label: "WEBHOOK_SECRET" })
      )
  })
  const webhookVerifyToken = yield* requiredSecret(
    "WEBHOOK_VERIFY_TOKEN",
    production,
    "the token Meta sends as hub.verify_token"
  )
  const instagramAccessToken = Option.map(
    yield* optionalString("INSTAGRAM_ACCESS_TOKEN"),
    (token) => Redacted.make(token, { label: "INSTAGRAM_ACCESS_TOKEN" })
  )
  const secretKey = yield* requiredSecret("SECRET_KEY", production, "the bearer token of the admin API")
  const graphApiUrl = yield* Config.String("GRAPH_API_URL").pipe(
    Config.withDefault("https://graph.facebook.com/v25.0"),
    Config.map((url) => url.replace(/\/+$/, ""))
  )
  const ownerResolution = yield* Config.Literals(["auto", "entry", "graph"], "OWNER_RESOLUTION").pipe(
    Config.withDefault("auto" as const)
  )
  const maxBodyBytes = yield* Config.Int("MAX_BODY_BYTES").pipe(Config.withDefault(5 * 1024 * 1024))
  const logLevel = yield* Config.Literals(["debug", "info", "warn", "error"], "LOG_LEVEL").pipe(
    Config.withDefault("info" as const),
    Config.map((level) => logLevels[level])
  )
  const queueType = yield* Config.Literals(["quorum", "classic"], "QUEUE_TYPE").pipe(
    Config.withDefault("quorum" as const)
  )
  const deliveryLease = yield* Config.Duration("DELIVERY_LEASE").pipe(Config.withDefault(Duration.seconds(15)))
  const sweepInterval = yield* Config.Duration("SWEEP_INTERVAL").pipe(Config.withDefault(Duration.seconds(2)))
  const journalRetention = yield* Config.Duration("JOURNAL_RETENTION").pipe(Config.withDefault(Duration.days(7)))
  const graphCallsPerSecond = yield* Config.schema(Schema.Finite.check(Schema.isGreaterThan(0)), "GRAPH_API_CALLS_PER_SECOND")
    .pipe(Config.withDefault(10))
  const graphBurst = yield* Config.schema(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), "GRAPH_API_BURST").pipe(
    Config.withDefault(10)
  )
  const graphTimeout = yield* Config.Duration("GRAPH_API_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5)))
  const graphThrottlePause = yield* Config.Duration("GRAPH_API_THROTTLE_PAUSE").pipe(
    Config.withDefault(Duration.seconds(60))
  )
  const graphCircuitThreshold = yield* Config.schema(
    Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
    "GRAPH_API_CIRCUIT_THRESHOLD"
  ).pipe(Config.withDefault(5))
  const graphCircuitCooldown = yield* Config.Duration("GRAPH_API_CIRCUIT_COOLDOWN").pipe(
    Config.withDefault(Duration.seconds(30))
  )
  const graphCacheSize = yield* Config.schema(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), "GRAPH_CACHE_SIZE").pipe(
    Config.withDefault(100_000)
  )
  const graphPermanentFailureTtl = yield* Config.Duration("GRAPH_PERMANENT_FAILURE_TTL").pipe(
    Config.withDefault(Duration.hours(1))
  )
  const rateLimitWebhook = yield* Config.Int("RATE_LIMIT_WEBHOOK").pipe(Config.withDefault(10_000))
  const rateLimitAdmin = yield* Config.Int("RATE_LIMIT_ADMIN").pipe(Config.withDefault(50))
  const maxAdminBodyBytes = yield* Config.Int("MAX_ADMIN_BODY_BYTES").pipe(Config.withDefault(64 * 1024))
  const journalBatchRequests = yield* Config.schema(
    Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4096 })),
    "JOURNAL_BATCH_REQUESTS"
  ).pipe(Config.withDefault(256))
  const journalBatchWindow = yield* Config.Duration("JOURNAL_BATCH_WINDOW").pipe(Config.withDefault(Duration.zero))
  const traceUiUrl = yield* optionalString("TRACE_UI_URL")
  return {
    traceUiUrl,
    journalBatchRequests,
    journalBatchWindow,
    rateLimitWebhook,
    rateLimitAdmin,
    maxAdminBodyBytes,
    graphCallsPerSecond,
    graphBurst,
    graphTimeout,
    graphThrottlePause,
    graphCircuitThreshold,
    graphCircuitCooldown,
    graphCacheSize,
    graphPermanentFailureTtl,
    journalRetention,
    deliveryLease,
    sweepInterval,
    production,
    port,
    host,
    databaseUrl,
    rabbitmqUrl,
    instagramAppId,
    instagramAppSecret,
    webhookSecrets,
    webhookVerifyToken,
    instagramAccessToken,
    secretKey,
    graphApiUrl,
    ownerResolution,
    maxBodyBytes,
    logLevel,
    queueType
  } satisfies AppConfigShape
})

/** The service's configuration, read and validated once at start. */
export class AppConfig extends Context.Service<AppConfig, AppConfigShape>()("chatico/layers/Config/AppConfig") {
  static readonly layer = Layer.effect(AppConfig, load)
  /** For tests: fixed values, no environment. */
  static readonly layerWith = (config: AppConfigShape) => Layer.succeed(AppConfig, config)
}
