import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import { HttpServer } from "effect/http"
import { MAX_EVENTS_PER_BODY } from "../../src/domain/Webhook.ts"
import { appWith } from "../../src/layers/App.ts"
import { AppConfig, type AppConfigShape, DEFAULT_MAX_INFLIGHT_WEBHOOKS } from "../../src/services/AppConfig.ts"
import { leakedLines, watchSecrets } from "./SecretWatch.ts"
import { TestDatabase } from "./TestDatabase.ts"

export const SECRET_KEY = "test-secret-key-0123456789"
export const APP_SECRET = "test-app-secret"
export const VERIFY_TOKEN = "test-verify-token"

export const testConfig = (databaseUrl: string, overrides: Partial<AppConfigShape> = {}): AppConfigShape => ({
  production: false,
  port: 0,
  host: "127.0.0.1",
  databaseUrl: Redacted.make(databaseUrl),
  rabbitmqUrl: Redacted.make("amqp://guest:guest@127.0.0.1:5672"),
  instagramAppId: Option.none(),
  instagramAppSecret: Redacted.make(APP_SECRET),
  webhookSecrets: [Redacted.make(APP_SECRET)],
  webhookVerifyToken: Redacted.make(VERIFY_TOKEN),
  instagramAccessToken: Option.none(),
  secretKey: Redacted.make(SECRET_KEY),
  graphApiUrl: "http://127.0.0.1:9/v25.0",
  ownerResolution: "entry",
  maxBodyBytes: 5 * 1024 * 1024,
  maxEventsPerBody: MAX_EVENTS_PER_BODY,
  maxInflightBodyBytes: 64 * 1024 * 1024,
  maxInflightWebhooks: DEFAULT_MAX_INFLIGHT_WEBHOOKS,
  logLevel: "Warn",
  queueType: "quorum",
  deliveryLease: Duration.seconds(2),
  sweepInterval: Duration.millis(500),
  journalRetention: Duration.days(7),
  rateLimitWebhook: 0,
  rateLimitAdmin: 0,
  maxAdminBodyBytes: 64 * 1024,
  journalBatchRequests: 256,
  journalBatchWindow: Duration.zero,
  redisUrl: Option.none(),
  graphCallsPerSecond: 50,
  graphBurst: 50,
  graphTimeout: Duration.seconds(2),
  graphThrottlePause: Duration.seconds(1),
  graphCircuitThreshold: 5,
  graphCircuitCooldown: Duration.seconds(1),
  graphCacheSize: 10_000,
  graphPermanentFailureTtl: Duration.hours(1),
  traceUiUrl: Option.none(),
  accessLog: true,
  pendingAgeAlert: Duration.minutes(5),
  graphOutageAlert: Duration.minutes(2),
  unroutableQueue: "chatico.unroutable",
  ...overrides
})

export type RequestOptions = RequestInit & { readonly auth?: boolean | string; readonly json?: unknown }
export interface TestResponse<T> {
  readonly status: number
  /** The parsed JSON body (or the text when it is not JSON). */
  readonly body: T
  readonly text: string
  readonly headers: Headers
}

/** The running service, on an ephemeral loopback port. */
export class TestApp extends Context.Service<TestApp, {
  readonly baseUrl: string
  readonly database: string
  /** `fetch` against the service, with the admin bearer token unless `auth: false`. */
  readonly request: <T = Record<string, unknown>>(
    path: string,
    init?: RequestOptions
  ) => Effect.Effect<TestResponse<T>>
}>()("test/TestApp") {
  /** `observability`: e.g. tracing into an in-memory exporter; none by default. */
  static readonly layer = (
    prefix: string,
    overrides: Partial<AppConfigShape> = {},
    observability: Layer.Layer<never> = Layer.empty
  ) =>
    Layer.effect(
      TestApp,
      Effect.gen(function*() {
        const server = yield* HttpServer.HttpServer
        const db = yield* TestDatabase
        const address = server.address
        if (address._tag === "UnixPathAddress") return yield* Effect.die("expected a TCP address")
        const baseUrl = `http://127.0.0.1:${address.port}`
        const request = <T,>(path: string, init: RequestOptions = {}) =>
          Effect.promise(async (): Promise<TestResponse<T>> => {
            const { auth = true, json, ...rest } = init
            const headers = new Headers(rest.headers)
            if (auth !== false) headers.set("authorization", `Bearer ${auth === true ? SECRET_KEY : auth}`)
            if (json !== undefined) headers.set("content-type", "application/json")
            const response = await fetch(`${baseUrl}${path}`, {
              ...rest,
              headers,
              ...(json === undefined ? {} : { body: JSON.stringify(json) })
            })
            const text = await response.text()
            let body = text.length > 0 ? text : null
            try {
              body = text.length > 0 ? JSON.parse(text) : null
            } catch {
              // Not JSON: the test sees the text.
            }
            return { status: response.status, body: body as T, text, headers: response.headers }
          })
        // Wait until migrations are done, so tests start against a ready service.
        yield* Effect.promise(async () => {
          for (let i = 0; i < 200; i++) {
            const response = await fetch(`${baseUrl}/monitoring/health`).catch(() => undefined)
            if (response?.status === 200) return
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
          throw new Error("service did not become healthy")
        })
        const config = testConfig(db.url, overrides)
        watchSecrets(
          ...[config.instagramAppSecret, config.webhookVerifyToken, config.secretKey, ...config.webhookSecrets].map(Redacted.value),
          ...Option.toArray(Option.map(config.instagramAccessToken, Redacted.value))
        )
        yield* Effect.addFinalizer(() =>
          leakedLines().length === 0
            ? Effect.void
            : Effect.die(new Error(`a log line contained a configured secret:\n${leakedLines().join("\n")}`))
        )
        return TestApp.of({ baseUrl, database: db.name, request })
      })
    ).pipe(
      Layer.provide(
        Layer.unwrap(Effect.map(TestDatabase, (db) =>
          appWith(observability).pipe(Layer.provide(AppConfig.layerWith(testConfig(db.url, overrides))))
        ))
      ),
      Layer.provideMerge(TestDatabase.layer(prefix))
    )
}

/** A Postgres client on the test app's own database, for tests that read or write the journal directly. */
export const JournalDb = Layer.unwrap(Effect.map(TestApp, (app) =>
  PgClient.layer({ url: Redacted.make(`postgres://postgres@127.0.0.1:5432/${app.database}`), maxConnections: 2 })))
