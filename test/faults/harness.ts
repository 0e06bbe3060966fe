import amqp from "amqplib"
import { readFileSync } from "node:fs"
import { createHmac, randomUUID } from "node:crypto"
import {
  dropDatabase,
  postWorkerApp,
  psql,
  type ServiceProcess,
  startService,
  stopService,
  waitHealthy
} from "../support/ServiceProcess.ts"

export const SECRET = "fault-app-secret"
export const ADMIN_KEY = "fault-admin-key"
const PG = "postgres://postgres@127.0.0.1:5432"

/** The service's environment for a fault test: its own database, short leases so recovery is quick. */
export const faultEnv = (database: string, overrides: Record<string, string> = {}) => ({
  DATABASE_URL: `${PG}/${database}`,
  RABBITMQ_URL: "amqp://guest:guest@127.0.0.1:5672",
  INSTAGRAM_APP_SECRET: SECRET,
  WEBHOOK_VERIFY_TOKEN: "fault-verify",
  SECRET_KEY: ADMIN_KEY,
  OWNER_RESOLUTION: "entry",
  DELIVERY_LEASE: "2 seconds",
  SWEEP_INTERVAL: "500 millis",
  LOG_LEVEL: "info",
  ...overrides
})

export const newName = (label: string) => `chatico_test_fault_${label}_${Math.random().toString(36).slice(2, 8)}`

export const createWorkerApp = (service: ServiceProcess, ownerId: string, queue: string) =>
  postWorkerApp(service, ADMIN_KEY, ownerId, queue)

/** One signed comment webhook; resolves to the HTTP status (0 when the connection failed). */
export const postComment = async (baseUrl: string, ownerId: string, commentId: string) => {
  const body = JSON.stringify({
    object: "instagram",
    entry: [{ id: ownerId, time: 1, changes: [{ field: "comments", value: { id: commentId, text: "hi" } }] }]
  })
  const signature = `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`
  try {
    const response = await fetch(`${baseUrl}/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-hub-signature-256": signature },
      body,
      signal: AbortSignal.timeout(15_000)
    })
    await response.arrayBuffer()
    return { status: response.status, retryAfter: response.headers.get("retry-after") }
  } catch {
    return { status: 0, retryAfter: null }
  }
}

/** Counts what arrives on a queue, by the comment id inside each message. */
export const collect = async (queue: string) => {
  const connection = await amqp.connect("amqp://guest:guest@127.0.0.1:5672")
  const channel = await connection.createChannel()
  await channel.prefetch(500)
  const seen = new Map<string, number>()
  const headers = new Map<string, Record<string, unknown>>()
  await channel.consume(queue, (message) => {
    if (message === null) return
    const body = JSON.parse(message.content.toString()) as { value: { id: string } }
    seen.set(body.value.id, (seen.get(body.value.id) ?? 0) + 1)
    headers.set(body.value.id, message.properties.headers ?? {})
    channel.ack(message)
  })
  return {
    seen,
    /** The AMQP headers of the last message with each id. */
    headers,
    /** Waits until every id has arrived (or the deadline passes); returns the ids still missing. */
    waitFor: async (ids: ReadonlyArray<string>, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        if (ids.every((id) => seen.has(id))) return []
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      return ids.filter((id) => !seen.has(id))
    },
    close: async () => {
      await connection.close().catch(() => {})
    }
  }
}

export const deleteQueues = async (queues: ReadonlyArray<string>) => {
  const connection = await amqp.connect("amqp://guest:guest@127.0.0.1:5672")
  const channel = await connection.createChannel()
  for (const queue of queues) {
    await channel.deleteQueue(queue).catch(() => {})
    await channel.deleteQueue(`${queue}.dlq`).catch(() => {})
  }
  await connection.close().catch(() => {})
}

/**
 * Posts webhooks from `concurrency` loops until `stop()`; remembers which
 * comment ids were acknowledged with 200.
 */
export const steadyLoad = (baseUrl: () => string, ownerId: string, concurrency = 8) => {
  const acknowledged: Array<string> = []
  /** When each acknowledged webhook was sent (ms since the epoch). */
  const sentAt = new Map<string, number>()
  const statuses = new Map<number, number>()
  let running = true
  const loop = async () => {
    while (running) {
      const id = `c-${randomUUID()}`
      const sent = Date.now()
      const { status } = await postComment(baseUrl(), ownerId, id)
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
      if (status === 200) {
        acknowledged.push(id)
        sentAt.set(id, sent)
      }
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const loops = Array.from({ length: concurrency }, loop)
  return {
    acknowledged,
    sentAt,
    statuses,
    stop: async () => {
      running = false
      await Promise.all(loops)
    }
  }
}

/** The resident memory of a service process, in MB (from /proc). */
export const rssMb = (service: ServiceProcess): number => {
  const status = readFileSync(`/proc/${service.child.pid}/status`, "utf8")
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0")
  return kb / 1024
}

/** A memory ceiling for the service under the faults: every mailbox is bounded, so it must hold. */
export const MAX_RSS_MB = 600

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export { dropDatabase, psql, startService, stopService, waitHealthy }
export type { ServiceProcess }

export interface FaultFigures {
  readonly fault: string
  readonly runs: number
  readonly acknowledged: number
  readonly delivered: number
  readonly duplicates: number
  readonly lost: number
}

const figures: Array<FaultFigures> = []

/** Tallies one fault run from what was acknowledged and what the consumer saw. */
export const tally = (fault: string, runs: number, acknowledged: ReadonlyArray<string>, seen: ReadonlyMap<string, number>) => {
  const delivered = acknowledged.filter((id) => seen.has(id)).length
  const duplicates = acknowledged.reduce((sum, id) => sum + Math.max(0, (seen.get(id) ?? 0) - 1), 0)
  const result = { fault, runs, acknowledged: acknowledged.length, delivered, duplicates, lost: acknowledged.length - delivered }
  figures.push(result)
  return result
}

/** The figures of this file's runs, one line each, for the README's reliability table. */
export const printFigures = () => {
  for (const f of figures) {
    console.log(`reliability | ${f.fault} | ${f.runs} | ${f.acknowledged} | ${f.delivered} | ${f.duplicates} | ${f.lost} |`)
  }
}
