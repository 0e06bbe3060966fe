import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Redacted } from "effect"
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { AppConfig, devDefaults } from "../src/services/AppConfig.ts"
import { ROOT } from "./support/ServiceProcess.ts"

const read = (file: string) => readFileSync(`${ROOT}/${file}`, "utf8")

/** What a fresh shell has after `set -a; . ./env.example; set +a`. */
const sourcedEnvExample = (): Record<string, string> => {
  const result = spawnSync("bash", ["-c", "set -eu; env -i bash -c 'set -a; . ./env.example; set +a; env -0'"], {
    cwd: ROOT,
    encoding: "utf8"
  })
  assert.strictEqual(result.status, 0, result.stderr)
  return Object.fromEntries(
    result.stdout.split("\0").filter((pair) => pair.includes("=")).map((pair) => {
      const at = pair.indexOf("=")
      return [pair.slice(0, at), pair.slice(at + 1)]
    })
  )
}

describe("development values", () => {
  it.effect("env.example is valid shell, lists NODE_ENV, and loads as the development configuration", () =>
    Effect.gen(function*() {
      const env = sourcedEnvExample()
      assert.strictEqual(env["NODE_ENV"], "development")
      const { PWD: _pwd, SHLVL: _shlvl, _: _underscore, ...vars } = env
      const config = yield* Effect.provide(Effect.service(AppConfig), AppConfig.layer).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: vars })))
      )
      assert.strictEqual(config.host, "127.0.0.1")
      assert.strictEqual(Redacted.value(config.secretKey), devDefaults.SECRET_KEY)
      assert.strictEqual(Redacted.value(config.instagramAppSecret), devDefaults.INSTAGRAM_APP_SECRET)
      assert.strictEqual(Redacted.value(config.webhookVerifyToken), devDefaults.WEBHOOK_VERIFY_TOKEN)
    }))

  it("README, env.example, docker-compose.yml and prometheus.yml use the same development secrets", () => {
    const env = read("env.example")
    const compose = read("docker-compose.yml")
    for (const [name, value] of Object.entries(devDefaults)) {
      assert.include(env, `${name}=${value}\n`, `env.example ${name}`)
      assert.include(compose, `${name}: \${${name}:-${value}}`, `docker-compose.yml ${name}`)
      assert.include(read("README.md"), value, `README ${name}`)
    }
    assert.include(read("prometheus.yml"), `credentials: ${devDefaults.SECRET_KEY}\n`)
    for (const file of ["env.example", "docker-compose.yml", "prometheus.yml", "README.md"]) {
      assert.notMatch(read(file), /dev-[a-z-]+-change-me/, file)
    }
  })
})
