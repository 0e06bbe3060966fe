import { Config, Context, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import * as Runtime from "effect/Runtime"
import { MAX_EVENTS_PER_BODY } from "../domain/Webhook.ts"

/** A required variable that is absent (or empty) where it must be set. */
export class MissingConfig extends Schema.TaggedClass<MissingConfig>()("MissingConfig", {
  variable: Schema.String,
  hint: Schema.String
}) {}

/** A variable that is set but refused (never with its value: it may be a secret). */
export class InvalidConfig extends Schema.TaggedClass<InvalidConfig>()("InvalidConfig", {
  variable: Schema.String,
  problem: Schema.String
}) {}

/** The one error of AppConfig. Its message is the one line start-up prints before exiting. */
export class AppConfigError extends Schema.TaggedError<AppConfigError>()("AppConfigError", {
  reason: Schema.Union([MissingConfig, InvalidConfig])
}) {
  override readonly [Runtime.errorReported] = false
  override get message() {
    return this.reason._tag === "MissingConfig"
      ? `missing required environment variable ${this.reason.variable}: ${this.reason.hint}`
      : `invalid environment variable ${this.reason.variable}: ${this.reason.problem}`
  }
}

const missing = (variable: string, hint: string) => new AppConfigError({ reason: new MissingConfig({ variable, hint }) })
const invalid = (variable: string, problem: string) => new AppConfigError({ reason: new InvalidConfig({ variable, problem }) })

export type NodeEnv = "production" | "development" | "test"

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
  /** Events one webhook body may carry; more is answered 413. */
  readonly maxEventsPerBody: number
  /** Webhook body bytes held at once across all requests (read, not yet answered); beyond it 503 + Retry-After. */
  readonly maxInflightBodyBytes: number
  /** Webhook POSTs being handled at once (from the request's arrival to its answer); beyond it 503 + Retry-After. */
  readonly maxInflightWebhooks: number
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
  /** One log line per HTTP request. */
  readonly accessLog: boolean
  /** Health is `degraded` while a pending event is older than this. */
  readonly pendingAgeAlert: Duration.Duration
  /** Health is `degraded` once the Graph API has been unreachable for longer than this. */
  readonly graphOutageAlert: Duration.Duration
  /** Where events with no active worker app go. */
  readonly unroutableQueue: string
  /** `REDIS_URL`: when set, instances share the Graph API budget, throttle pause, circuit, owner hot cache and per-client limits. */
  readonly redisUrl: Option.Option<Redacted.Redacted<string>>
}

// Development defaults let `npm start` run on a fresh machine with no `.env`,
// and only while nobody but this machine can reach the port.
export const devDefaults = {
  INSTAGRAM_APP_SECRET: "dev-app-secret",
  WEBHOOK_VERIFY_TOKEN: "dev-verify-token",
  SECRET_KEY: "dev-secret-key"
} as const

/** Addresses only this machine can reach. */
export const isLoopback = (host: string) =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host)

/** Values copied from an example file rather than chosen: refused in production. */
const DEV_VALUES = new Set<string>(Object.values(devDefaults))
const PLACEHOLDER = /change[-_ ]?me/i
export const SECRET_KEY_MIN_LENGTH = 16

/** Webhooks handled at once by default: at the 1,000–3,000 a second a 2-core machine sustains, under a second of work. */
export const DEFAULT_MAX_INFLIGHT_WEBHOOKS = 512

const placeholderReason = (name: string, value: string): string | undefined => {
  if (PLACEHOLDER.test(value) || DEV_VALUES.has(value.trim().toLowerCase())) {
    return "a placeholder or development value; set a real secret"
  }
  if (name === "SECRET_KEY" && value.length < SECRET_KEY_MIN_LENGTH) {
    return `shorter than ${SECRET_KEY_MIN_LENGTH} characters`
  }
  return undefined
}

/** Loopback-only development may not be production, nor listen where others reach it. */
interface SecretPolicy {
  readonly production: boolean
  readonly host: string
}

const optionalString = (name: string) =>
  Config.String(name).pipe(
    Config.option,
    Config.map(Option.filter((value) => value.trim().length > 0))
  )

/** A secret that is set: refused in production when it is a placeholder. */
const checkedSecret = (
  name: string,
  value: string,
  policy: SecretPolicy
): Effect.Effect<Redacted.Redacted<string>, AppConfigError> => {
  const reason = policy.production ? placeholderReason(name, value) : undefined
  return reason === undefined
    ? Effect.succeed(Redacted.make(value, { label: name }))
    : Effect.fail(invalid(name, reason))
}

const requiredSecret = (name: keyof typeof devDefaults, policy: SecretPolicy, hint: string) =>
  Effect.flatMap(optionalString(name), (value): Effect.Effect<Redacted.Redacted<string>, AppConfigError> => {
    if (Option.isSome(value)) return checkedSecret(name, value.value, policy)
    if (policy.production) return Effect.fail(missing(name, hint))
    if (!isLoopback(policy.host)) {
      return Effect.fail(missing(name, `${hint} (development defaults are only used on a loopback HOST)`))
    }
    return Effect.as(
      Effect.logWarning(`${name} is not set: using the development default, served on ${policy.host} only`),
      Redacted.make<string>(devDefaults[name], { label: name })
    )
  })

// RabbitMQ's grammar for the queue names the service declares (as for worker apps').
const QUEUE_NAME = /^[A-Za-z0-9._:-]{1,200}$/

const logLevels = { debug: "Debug", info: "Info", warn: "Warn", error: "Error" } as const

const load = Effect.gen(function*() {
  const nodeEnv = Option.getOrElse(yield* optionalString("NODE_ENV"), () => "development")
  if (nodeEnv !== "production" && nodeEnv !== "development" && nodeEnv !== "test") {
    return yield* invalid("NODE_ENV", "must be production, development or test")
  }
  const production = nodeEnv === "production"
  const port = yield* Config.Port("PORT").pipe(Config.withDefault(8000))
  const host = Option.getOrElse(yield* optionalString("HOST"), () => production ? "0.0.0.0" : "127.0.0.1")
  const policy: SecretPolicy = { production, host }
  const databaseUrl = yield* Config.Redacted("DATABASE_URL").pipe(
    Config.withDefault(Redacted.make("postgres://postgres@127.0.0.1:5432/chatico_mapper"))
  )
  const rabbitmqUrl = yield* Config.Redacted("RABBITMQ_URL").pipe(
    Config.withDefault(Redacted.make("amqp://guest:guest@127.0.0.1:5672"))
  )
  const instagramAppId = yield* optionalString("INSTAGRAM_APP_ID")
  if (production && Option.isNone(instagramAppId)) {
    return yield* missing("INSTAGRAM_APP_ID", "the Meta app id")
  }
  const instagramAppSecret = yield* requiredSecret(
    "INSTAGRAM_APP_SECRET",
    policy,
    "the Meta app secret, the key of X-Hub-Signature-256"
  )
  const webhookSecretList = yield* optionalString("WEBHOOK_SECRET")
  const webhookSecrets = yield* Option.match(webhookSecretList, {
    onNone: () => Effect.succeed([instagramAppSecret]),
    onSome: (list) =>
      Effect.forEach(
        list.split(",").map((s) => s.trim()).filter((s) => s.length > 0),
        (s) => checkedSecret("WEBHOOK_SECRET", s, policy)
      )
  })
  const webhookVerifyToken = yield* requiredSecret(
    "WEBHOOK_VERIFY_TOKEN",
    policy,
    "the token Meta sends as hub.verify_token"
  )
  const accessToken = yield* optionalString("INSTAGRAM_ACCESS_TOKEN")
  const instagramAccessToken = Option.isSome(accessToken)
    ? Option.some(yield* checkedSecret("INSTAGRAM_ACCESS_TOKEN", accessToken.value, policy))
    : Option.none()
  const secretKey = yield* requiredSecret("SECRET_KEY", policy, "the bearer token of the admin API")
  const graphApiUrl = yield* Config.String("GRAPH_API_URL").pipe(
    Config.withDefault("https://graph.facebook.com/v25.0"),
    Config.map((url) => url.replace(/\/+$/, ""))
  )
  const ownerResolution = yield* Config.Literals(["auto", "entry", "graph"], "OWNER_RESOLUTION").pipe(
    Config.withDefault("auto" as const)
  )
  const maxBodyBytes = yield* Config.Int("MAX_BODY_BYTES").pipe(Config.withDefault(5 * 1024 * 1024))
  const maxEventsPerBody = yield* Config.schema(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), "MAX_EVENTS_PER_BODY")
    .pipe(Config.withDefault(MAX_EVENTS_PER_BODY))
  const maxInflightBodyBytes = yield* Config.schema(
    Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
    "MAX_INFLIGHT_BODY_BYTES"
  ).pipe(Config.withDefault(64 * 1024 * 1024))
  const maxInflightWebhooks = yield* Config.schema(
    Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
    "MAX_INFLIGHT_WEBHOOKS"
  ).pipe(Config.withDefault(DEFAULT_MAX_INFLIGHT_WEBHOOKS))
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
  const accessLog = yield* Config.Boolean("ACCESS_LOG").pipe(Config.withDefault(true))
  const pendingAgeAlert = yield* Config.Duration("PENDING_AGE_ALERT").pipe(Config.withDefault(Duration.minutes(5)))
  const graphOutageAlert = yield* Config.Duration("GRAPH_API_OUTAGE_ALERT").pipe(Config.withDefault(Duration.minutes(2)))
  const unroutableQueue = Option.getOrElse(yield* optionalString("UNROUTABLE_QUEUE"), () => "chatico.unroutable")
  if (!QUEUE_NAME.test(unroutableQueue) || unroutableQueue.toLowerCase().startsWith("amq.")) {
    return yield* invalid(
      "UNROUTABLE_QUEUE",
      "must be 1 to 200 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-', not starting with 'amq.'"
    )
  }
  const traceUiUrl = yield* optionalString("TRACE_UI_URL")
  const redisUrl = Option.map(yield* optionalString("REDIS_URL"), (url) => Redacted.make(url, { label: "REDIS_URL" }))
  return {
    traceUiUrl,
    accessLog,
    pendingAgeAlert,
    graphOutageAlert,
    unroutableQueue,
    redisUrl,
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
    maxEventsPerBody,
    maxInflightBodyBytes,
    maxInflightWebhooks,
    logLevel,
    queueType
  } satisfies AppConfigShape
})

/** The service's configuration, read and validated once at start. */
export class AppConfig extends Context.Service<AppConfig, AppConfigShape>()("chatico/services/AppConfig") {
  static readonly layer = Layer.effect(AppConfig, load)
  /** For tests: fixed values, no environment. */
  static readonly layerWith = (config: AppConfigShape) => Layer.succeed(AppConfig, config)
}
