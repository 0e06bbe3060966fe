import { Effect, Schema } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { promisify } from "node:util"
import { createHmac } from "node:crypto"
import { connectAmqp, deleteQueues } from "./Amqp.ts"
import { GraphStandIn, replies } from "./GraphStandIn.ts"
import {
  dropDatabase,
  HEALTH_PROBE_TIMEOUT_MS,
  postWorkerApp,
  psql,
  type ServiceProcess,
  startService,
  stopService,
  waitHealthy
} from "./ServiceProcess.ts"

export { dropDatabase, psql }

/** Several service processes on one database, one broker and (optionally) one Redis, as a deployment runs them. */

export const SECRET = "instances-app-secret"
export const ADMIN_KEY = "instances-admin-key"
export const VERIFY_TOKEN = "instances-verify"
export const REDIS_URL = "redis://127.0.0.1:6379/0"
const PG = "postgres://postgres@127.0.0.1:5432"

export const newName = (label: string) => `chatico_test_${label}_${Math.random().toString(36).slice(2, 8)}`

/**
 * Removes every key under a test's prefix (the tests' own keys only), including the owners' hot
 * tier, whose namespace effect's persistence writes with `:` escaped as `%3A`.
 */
export const deleteRedisKeys = (prefix: string) => {
  for (const pattern of [`${prefix}*`, `${prefix.replace(/%/g, "%25").replace(/:/g, "%3A")}*`]) {
    const keys = execFileSync("redis-cli", ["-h", "127.0.0.1", "--scan", "--pattern", pattern], { encoding: "utf8" })
      .split("\n").filter((key) => key.length > 0)
    for (let i = 0; i < keys.length; i += 500) execFileSync("redis-cli", ["-h", "127.0.0.1", "DEL", ...keys.slice(i, i + 500)])
  }
}

/** The environment of instance `index`: graph mode, its own Graph API path (`/v25.<index>`) so calls tell who made them. */
export const instanceEnv = (database: string, graphUrl: string, index: number, overrides: Record<string, string>) => ({
  DATABASE_URL: `${PG}/${database}`,
  RABBITMQ_URL: "amqp://guest:guest@127.0.0.1:5672",
  INSTAGRAM_APP_SECRET: SECRET,
  WEBHOOK_VERIFY_TOKEN: VERIFY_TOKEN,
  SECRET_KEY: ADMIN_KEY,
  OWNER_RESOLUTION: "graph",
  INSTAGRAM_ACCESS_TOKEN: "IGQVJ-instances-token",
  GRAPH_API_URL: graphUrl.replace(/\/v[0-9.]+$/, `/v25.${index}`),
  GRAPH_API_TIMEOUT: "2 seconds",
  SWEEP_INTERVAL: "500 millis",
  LOG_LEVEL: "info",
  ...overrides
})

/** Starts `count` instances; the first creates and migrates the database before the others start. */
export const startInstances = async (count: number, env: (index: number) => Record<string, string>) => {
  const started: Array<ServiceProcess> = [await startService(env(0))]
  try {
    await waitHealthy(started[0]!, 60_000)
    for (let i = 1; i < count; i++) started.push(await startService(env(i)))
    await Promise.all(started.slice(1).map((service) => waitHealthy(service, 60_000)))
    return started
  } catch (error) {
    // Nothing is left running when start-up fails.
    await Promise.all(started.map(stopService))
    throw error
  }
}

export const stopInstances = (services: ReadonlyArray<ServiceProcess>) => Promise.all(services.map(stopService))

export const createWorkerApp = (service: ServiceProcess, ownerId: string, queue: string) =>
  postWorkerApp(service, ADMIN_KEY, ownerId, queue)

/**
 * One signed webhook with one comment per media; resolves to the HTTP status. Each media's entry
 * has an account of its own (`entryPrefix` + the media's last digits), so its events are not held
 * in one account's order behind each other's lookups.
 */
export const postMediaComments = async (service: ServiceProcess, entryPrefix: string, media: ReadonlyArray<string>) => {
  const body = JSON.stringify({
    object: "instagram",
    entry: media.map((mediaId) => ({
      id: `${entryPrefix}${mediaId.slice(-9)}`,
      time: 1,
      changes: [{ field: "comments", value: { id: `c-${mediaId}`, text: "hi", media: { id: mediaId } } }]
    }))
  })
  const response = await fetch(`${service.baseUrl}/webhook`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}` },
    body,
    signal: AbortSignal.timeout(15_000)
  })
  await response.arrayBuffer()
  return response.status
}

/** Media ids of Meta's shape, distinct per call. */
export const mediaIds = (count: number, seed = Math.floor(Math.random() * 1e6)) =>
  Array.from({ length: count }, (_, i) => `1820${String(seed).padStart(6, "0")}${String(i).padStart(5, "0")}`)

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls until `done` or the deadline; returns whether it got there. */
export const eventually = async (done: () => boolean, timeoutMs: number, everyMs = 250) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (done()) return true
    await sleep(everyMs)
  }
  return done()
}

/** Polls an asynchronous check until it holds or the deadline passes. */
export const eventuallyAsync = async (done: () => Promise<boolean>, timeoutMs: number, everyMs = 200) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await done()) return true
    await sleep(everyMs)
  }
  return done()
}

/** Until every instance's health reports this Redis mode (and, when given, this many live instances). */
export const waitRedisMode = (services: ReadonlyArray<ServiceProcess>, mode: string, timeoutMs: number, instances?: number) =>
  eventuallyAsync(async () => {
    const checks = await Promise.all(services.map(redisHealth))
    return checks.every((check) => check?.detail.mode === mode && (instances === undefined || check.detail.instances === instances))
  }, timeoutMs)

const execFileAsync = promisify(execFile)

/** Events in a status; asynchronous, so the Graph API stand-in in this process keeps answering (and timing) calls meanwhile. */
export const countByStatus = async (database: string, status: string) => {
  const { stdout } = await execFileAsync("psql", [
    "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-At", "-c",
    `SELECT count(*) FROM webhook_events WHERE status = '${status}'`
  ])
  return Number(stdout.trim())
}

/** Until `count` events are routed. */
export const waitRouted = (database: string, count: number, timeoutMs: number) =>
  eventuallyAsync(async () => (await countByStatus(database, "routed")) === count, timeoutMs, 500)

/** What the events not yet routed say (for a failure message): counts by status, then up to 20 of them. */
export const unroutedReport = (database: string) =>
  [
    psql(database, "SELECT status || ': ' || count(*) FROM webhook_events GROUP BY status ORDER BY status"),
    psql(
      database,
      `SELECT concat_ws(' | ', event_id, entry_id, media_id, status, attempts, claimed_by, lease_until, last_error)
       FROM webhook_events WHERE status <> 'routed' ORDER BY seq LIMIT 20`
    )
  ].join("\n")

/** The longest stall of this process's event loop while `run` runs (a stalled stand-in stamps calls late, in bunches). */
export const withLagProbe = async <A>(run: () => Promise<A>) => {
  let worst = 0
  let last = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    worst = Math.max(worst, now - last - 50)
    last = now
  }, 50)
  try {
    return { value: await run(), worstLagMs: Math.round(worst) }
  } finally {
    clearInterval(timer)
  }
}

/**
 * The largest excess over a token bucket of `rate`/s and `burst` in any span
 * of the sorted arrival times: calls i..j may number at most
 * burst + rate × (t_j − t_i). A value ≤ 0 means the bucket was kept.
 */
export const bucketExcess = (times: ReadonlyArray<number>, rate: number, burst: number) => {
  let worst = Number.NEGATIVE_INFINITY
  for (let i = 0; i < times.length; i++) {
    for (let j = i; j < times.length; j++) {
      worst = Math.max(worst, j - i + 1 - (burst + (rate * (times[j]! - times[i]!)) / 1000))
    }
  }
  return worst
}

/** Calls made in the busiest window of `ms`. */
export const busiestWindow = (times: ReadonlyArray<number>, ms: number) => {
  let best = 0
  let start = 0
  for (let end = 0; end < times.length; end++) {
    while (times[end]! - times[start]! > ms) start++
    best = Math.max(best, end - start + 1)
  }
  return best
}

const RedisCheck = Schema.Struct({
  ok: Schema.Boolean,
  warning: Schema.optionalKey(Schema.String),
  detail: Schema.Struct({ status: Schema.String, mode: Schema.String, instances: Schema.Number, share: Schema.Number })
})
export type RedisCheck = typeof RedisCheck.Type
const decodeHealth = Schema.decodeUnknownSync(Schema.Struct({ checks: Schema.Struct({ redis: RedisCheck }) }))

export const redisHealth = async (service: ServiceProcess): Promise<RedisCheck | undefined> => {
  const response = await fetch(`${service.baseUrl}/monitoring/health`, { signal: AbortSignal.timeout(HEALTH_PROBE_TIMEOUT_MS) })
    .catch(() => undefined)
  if (response === undefined) return undefined
  return decodeHealth(await response.json()).checks.redis
}

/** Each instance's `graph_api` health check as JSON (for a failure message). */
export const graphHealthReport = async (services: ReadonlyArray<ServiceProcess>) => {
  const reports = await Promise.all(services.map(async (service) => {
    const response = await fetch(`${service.baseUrl}/monitoring/health`, { signal: AbortSignal.timeout(HEALTH_PROBE_TIMEOUT_MS) })
      .catch(() => undefined)
    if (response === undefined) return "no answer"
    const body = await response.json() as { readonly checks?: Record<string, unknown> }
    return JSON.stringify(body.checks?.["graph_api"])
  }))
  return reports.join("\n")
}

/** Requests of one client (this test process) spread over the instances; how many were let through. */
export const flood = async (services: ReadonlyArray<ServiceProcess>, requests: number, concurrency = 8) => {
  let allowed = 0
  let limited = 0
  let next = 0
  const started = Date.now()
  const worker = async () => {
    while (next < requests) {
      const service = services[next++ % services.length]!
      const url = `${service.baseUrl}/webhook?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=ping`
      const response = await fetch(url)
      await response.arrayBuffer()
      if (response.status === 429) limited++
      else if (response.status === 200) allowed++
      else throw new Error(`unexpected status ${response.status}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { allowed, limited, seconds: (Date.now() - started) / 1000 }
}

/**
 * Three instances on one database and broker (and one Redis when `redisPrefix` is given), a
 * worker app for `ownerId`, and Meta's stand-in answering that owner; all removed with the scope.
 */
export const startTrio = (options: {
  readonly label: string
  readonly ownerId: string
  readonly env: Record<string, string>
  readonly redisPrefix?: string | undefined
}) =>
  Effect.gen(function*() {
    const graph = yield* GraphStandIn.make
    graph.setFallback(() => replies.owner(options.ownerId))
    const database = newName(options.label)
    const queue = `t.${options.label}.${Math.random().toString(36).slice(2, 10)}`
    const amqp = yield* connectAmqp
    const redisPrefix = options.redisPrefix
    const services = yield* Effect.acquireRelease(
      Effect.promise(() =>
        startInstances(3, (index) =>
          instanceEnv(database, graph.url, index, {
            ...options.env,
            ...(redisPrefix === undefined ? {} : { REDIS_URL, REDIS_KEY_PREFIX: redisPrefix })
          })
        )
      ),
      (services) =>
        Effect.promise(async () => {
          await stopInstances(services)
          dropDatabase(database)
          await deleteQueues(amqp, [queue, `${queue}.dlq`])
          if (redisPrefix !== undefined) deleteRedisKeys(redisPrefix)
        })
    )
    yield* Effect.promise(() => createWorkerApp(services[0]!, options.ownerId, queue))
    return { graph, database, queue, amqp, services }
  })

export { type ServiceProcess }
