import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("../..", import.meta.url))

/** A free TCP port on loopback, picked by the kernel. */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export interface ServiceProcess {
  readonly child: ChildProcess
  readonly port: number
  readonly baseUrl: string
  /** Everything the process wrote to stdout and stderr so far. */
  readonly output: () => string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

/** The Node flags of package.json's `start` script (`exec node [flags] src/main.ts`) in a checkout. */
export const startFlags = (root = ROOT): Array<string> => {
  const start = (JSON.parse(readFileSync(`${root}/package.json`, "utf8")) as { scripts: { start: string } }).scripts.start
  const words = start.trim().split(/\s+/).filter((word, i) => !(i === 0 && word === "exec"))
  if (words[0] !== "node" || words[words.length - 1] !== "src/main.ts") throw new Error(`unexpected start script: ${start}`)
  return words.slice(1, -1)
}

/** Starts the service as `npm start` does (`node [flags] src/main.ts`) with the given environment. */
export const startService = async (env: Record<string, string>, port?: number): Promise<ServiceProcess> => {
  const listenPort = port ?? await freePort()
  const child = spawn(process.execPath, [...startFlags(), "src/main.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: String(listenPort), HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (chunk) => (output += chunk))
  child.stderr.on("data", (chunk) => (output += chunk))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal }))
  )
  return { child, port: listenPort, baseUrl: `http://127.0.0.1:${listenPort}`, output: () => output, exited }
}

/** How long one health probe may take; a probe right after start-up was seen to hang, so each is bounded. */
export const HEALTH_PROBE_TIMEOUT_MS = 3000

/** Polls `/monitoring/health` until it answers 200 (or the deadline passes, or the process exits). */
export const waitHealthy = async (service: ServiceProcess, timeoutMs = 20_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && service.child.exitCode === null) {
    const response = await fetch(`${service.baseUrl}/monitoring/health`, { signal: AbortSignal.timeout(HEALTH_PROBE_TIMEOUT_MS) })
      .catch(() => undefined)
    await response?.arrayBuffer().catch(() => undefined)
    if (response?.status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`service never became healthy; output:\n${service.output()}`)
}

/** One query through `psql` on the local Postgres, its output trimmed. */
export const psql = (database: string, query: string) =>
  execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-At", "-c", query], { encoding: "utf8" }).trim()

export const dropDatabase = (database: string) => psql("postgres", `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)

/** Creates a worker app through the admin API of a service process. */
export const postWorkerApp = async (service: Pick<ServiceProcess, "baseUrl">, adminKey: string, ownerId: string, queue: string) => {
  const response = await fetch(`${service.baseUrl}/worker-apps/`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({ name: `app-${queue}`, owner_id: ownerId, queue_name: queue })
  })
  if (response.status !== 201) throw new Error(`worker app not created: ${response.status} ${await response.text()}`)
}

export const stopService = async (service: ServiceProcess) => {
  if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill("SIGTERM")
  return service.exited
}
