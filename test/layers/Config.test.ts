import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Exit, Redacted } from "effect"
import { AppConfig, devDefaults } from "../../src/services/AppConfig.ts"

const production = {
  NODE_ENV: "production",
  INSTAGRAM_APP_ID: "1234",
  INSTAGRAM_APP_SECRET: "a-real-app-secret-9f2c",
  WEBHOOK_VERIFY_TOKEN: "a-real-verify-token-77",
  SECRET_KEY: "a-real-secret-key-0123456789"
}

/** The configuration read from exactly this environment. */
const load = (env: Record<string, string>) =>
  Effect.gen(function*() {
    return yield* AppConfig
  }).pipe(
    Effect.provide(AppConfig.layer),
    Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))),
    Effect.exit
  )

/** The one line start-up would print, from a failed load. */
const refusal = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const exit = yield* load(env)
    assert.isTrue(Exit.isFailure(exit), `accepted: ${JSON.stringify(env)}`)
    if (Exit.isSuccess(exit)) return ""
    const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    return error?._tag === "Fail" && error.error instanceof Error ? error.error.message : String(exit.cause)
  })

const loaded = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const exit = yield* load(env)
    if (Exit.isFailure(exit)) assert.fail(`refused ${JSON.stringify(env)}: ${String(exit.cause)}`)
    return Exit.isSuccess(exit) ? exit.value : assert.fail("unreachable")
  })

describe("configuration", () => {
  it.effect("with no environment: development on 127.0.0.1 with the development secrets and the documented defaults", () =>
    Effect.gen(function*() {
      const config = yield* loaded({})
      assert.isFalse(config.production)
      assert.strictEqual(config.host, "127.0.0.1")
      assert.strictEqual(Redacted.value(config.secretKey), devDefaults.SECRET_KEY)
      assert.strictEqual(Redacted.value(config.instagramAppSecret), devDefaults.INSTAGRAM_APP_SECRET)
      assert.isTrue(config.accessLog)
      assert.strictEqual(Duration.toMillis(config.pendingAgeAlert), 5 * 60_000)
      assert.strictEqual(config.unroutableQueue, "chatico.unroutable")
    }))

  it.effect("production listens on 0.0.0.0 by default", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* loaded(production)).host, "0.0.0.0")
      assert.strictEqual((yield* loaded({ ...production, HOST: "10.0.0.5" })).host, "10.0.0.5")
    }))

  it.effect("NODE_ENV is production, development or test; anything else stops start-up", () =>
    Effect.gen(function*() {
      assert.isFalse((yield* loaded({ NODE_ENV: "test" })).production)
      assert.isFalse((yield* loaded({ NODE_ENV: "development" })).production)
      for (const value of ["prod", "Production", "staging"]) {
        assert.strictEqual(
          yield* refusal({ ...production, NODE_ENV: value }),
          "invalid environment variable NODE_ENV: must be production, development or test"
        )
      }
    }))

  it.effect("development secrets only on a loopback address: any other HOST with a secret missing stops start-up", () =>
    Effect.gen(function*() {
      for (const host of ["127.0.0.1", "::1", "localhost", "127.0.0.2"]) {
        assert.strictEqual((yield* loaded({ HOST: host })).host, host)
      }
      for (const host of ["0.0.0.0", "::", "192.168.1.20"]) {
        assert.match(yield* refusal({ HOST: host }), /^missing required environment variable INSTAGRAM_APP_SECRET: /)
      }
      const { SECRET_KEY: _omitted, ...withoutKey } = production
      assert.match(
        yield* refusal({ ...withoutKey, NODE_ENV: "development", HOST: "0.0.0.0" }),
        /^missing required environment variable SECRET_KEY: .*loopback HOST/
      )
      // Every secret set: any address will do in development.
      assert.strictEqual((yield* loaded({ ...production, NODE_ENV: "development", HOST: "0.0.0.0" })).host, "0.0.0.0")
    }))

  it.effect("production refuses placeholders, the development values and a SECRET_KEY under 16 characters", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["SECRET_KEY", "change-me"],
        ["SECRET_KEY", "CHANGE-ME"],
        ["SECRET_KEY", "dev-secret-key-change-me"],
        ["SECRET_KEY", devDefaults.SECRET_KEY],
        ["SECRET_KEY", "fifteen-chars-x"],
        ["INSTAGRAM_APP_SECRET", "change-me"],
        ["INSTAGRAM_APP_SECRET", devDefaults.INSTAGRAM_APP_SECRET],
        ["WEBHOOK_VERIFY_TOKEN", devDefaults.WEBHOOK_VERIFY_TOKEN],
        ["WEBHOOK_SECRET", `${production.INSTAGRAM_APP_SECRET},change-me`],
        ["INSTAGRAM_ACCESS_TOKEN", "change-me"]
      ]
      for (const [variable, value] of cases) {
        const line = yield* refusal({ ...production, [variable]: value })
        assert.match(line, new RegExp(`^invalid environment variable ${variable}: `), `${variable}=${value}`)
        assert.notInclude(line, value, "the refused value is never printed")
      }
      assert.strictEqual(Redacted.value((yield* loaded({ ...production, SECRET_KEY: "sixteen-chars-xy" })).secretKey), "sixteen-chars-xy")
      // Development keeps accepting short or example values: it is loopback-only.
      assert.strictEqual(Redacted.value((yield* loaded({ SECRET_KEY: "change-me" })).secretKey), "change-me")
    }))

  it.effect("ACCESS_LOG, PENDING_AGE_ALERT and UNROUTABLE_QUEUE are read; a reserved or malformed unroutable queue is refused", () =>
    Effect.gen(function*() {
      const config = yield* loaded({ ACCESS_LOG: "false", PENDING_AGE_ALERT: "90 seconds", UNROUTABLE_QUEUE: "acme.unroutable" })
      assert.isFalse(config.accessLog)
      assert.strictEqual(Duration.toMillis(config.pendingAgeAlert), 90_000)
      assert.strictEqual(config.unroutableQueue, "acme.unroutable")
      for (const queue of ["amq.unroutable", "AMQ.x", "has space", "x".repeat(201)]) {
        assert.match(yield* refusal({ UNROUTABLE_QUEUE: queue }), /^invalid environment variable UNROUTABLE_QUEUE: /, queue)
      }
    }))
})
