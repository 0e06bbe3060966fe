import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const composeFile = "docker-compose.yml"

const run = (command: string, args: ReadonlyArray<string>) =>
  spawnSync(command, args, { cwd: root, encoding: "utf8", timeout: 8_000 })

// The Compose client to validate with: the v2 plugin (`docker compose`) if present,
// otherwise the standalone `docker-compose`; undefined when there is no Compose client.
const composeClient = ((): ReadonlyArray<string> | undefined => {
  if (run("docker", ["compose", "version"]).status === 0) return ["docker", "compose"]
  if (run("docker-compose", ["version"]).status === 0) return ["docker-compose"]
  return undefined
})()

// Top-level keys of the `services:` mapping, read from the file's text (two-space indentation).
const serviceNames = (text: string): ReadonlyArray<string> => {
  const names: Array<string> = []
  let inServices = false
  for (const line of text.split("\n")) {
    if (/^\S/.test(line) && !line.startsWith("#")) inServices = /^services:\s*$/.test(line)
    const match = inServices ? /^ {2}([A-Za-z0-9._-]+):\s*$/.exec(line) : null
    if (match?.[1] !== undefined) names.push(match[1])
  }
  return names
}

describe("docker-compose.yml", () => {
  it("passes dclint with no errors", () => {
    const result = run("node_modules/.bin/dclint", [composeFile, "--formatter", "json", "--color", "false"])
    expect(result.error).toBeUndefined()
    const reports = JSON.parse(result.stdout) as ReadonlyArray<{ errorCount: number; messages: ReadonlyArray<unknown> }>
    expect(reports.flatMap((report) => report.messages)).toEqual([])
    expect(reports.map((report) => report.errorCount)).toEqual([0])
    expect(result.status, result.stderr).toBe(0)
  }, 10_000)

  it("defines the service and its infrastructure", () => {
    const services = serviceNames(readFileSync(new URL(`../${composeFile}`, import.meta.url), "utf8"))
    expect(services).toEqual(expect.arrayContaining(["chatico-mapper", "postgres", "rabbitmq", "redis", "otel-collector", "jaeger"]))
  })

  // The one allowed skip: without a Compose client there is nothing to validate with.
  it.skipIf(composeClient === undefined)(`is accepted by \`${composeClient?.join(" ") ?? "docker compose"} config -q\``, () => {
    const [command = "docker", ...prefix] = composeClient ?? []
    const result = run(command, [...prefix, "-f", composeFile, "config", "-q"])
    expect(result.error).toBeUndefined()
    expect(result.status, result.stderr).toBe(0)
  }, 10_000)
})
