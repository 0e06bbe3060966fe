import { execFileSync } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { startTcpProxy } from "../support/TcpProxy.ts"
import {
  collect,
  createWorkerApp,
  deleteQueues,
  dropDatabase,
  faultEnv,
  newName,
  postComment,
  psql,
  type ServiceProcess,
  sleep,
  startService,
  steadyLoad,
  stopService,
  waitHealthy
} from "./harness.ts"

const databases: Array<string> = []
const queues: Array<string> = []
afterAll(async () => {
  for (const database of databases) dropDatabase(database)
  await deleteQueues(queues)
})

const setup = async (label: string, env: Record<string, string> = {}) => {
  const database = newName(label)
  databases.push(database)
  const queue = `t.fault.${label}.${Math.random().toString(36).slice(2, 8)}`
  queues.push(queue)
  const ownerId = String(1_000_000 + Math.floor(Math.random() * 1_000_000))
  const service = await startService(faultEnv(database, env))
  await waitHealthy(service)
  await createWorkerApp(service, ownerId, queue)
  return { database, queue, ownerId, service }
}

const health = async (service: ServiceProcess) => {
  const response = await fetch(`${service.baseUrl}/monitoring/health`)
  return { status: response.status, body: await response.json() as { status: string; failing?: Array<string> } }
}

const alive = (service: ServiceProcess) => service.child.exitCode === null && service.child.signalCode === null

describe("delivery under faults", () => {
  it("RabbitMQ unreachable: webhooks still get 200, events wait pending, all are delivered when it is back", async () => {
    const proxy = await startTcpProxy(5672)
    const { database, queue, ownerId, service } = await setup("amqpdown", {
      RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${proxy.port}`
    })
    const consumer = await collect(queue)
    try {
      proxy.cut()
      await sleep(300)
      const ids = Array.from({ length: 50 }, (_, i) => `down-${i}-${database}`)
      const statuses = await Promise.all(ids.map((id) => postComment(service.baseUrl, ownerId, id)))
      expect(statuses.map((s) => s.status)).toEqual(ids.map(() => 200))
      const degraded = await health(service)
      expect(degraded.status).toBe(503)
      expect(degraded.body.failing).toContain("rabbitmq")
      expect(Number(psql(database, "SELECT count(*) FROM webhook_events WHERE status = 'pending'"))).toBe(50)
      expect(consumer.seen.size).toBe(0)

      proxy.restore()
      expect(await consumer.waitFor(ids)).toEqual([])
      expect([...consumer.seen.values()].every((count) => count === 1)).toBe(true)
      expect(Number(psql(database, "SELECT count(*) FROM webhook_events WHERE status = 'routed'"))).toBe(50)
      expect((await health(service)).status).toBe(200)
      expect(alive(service)).toBe(true)
    } finally {
      await consumer.close()
      await stopService(service)
      await proxy.close()
    }
  }, 90_000)

  it("Postgres unreachable: 503 with Retry-After, never 200, health names the database, then normal service", async () => {
    const proxy = await startTcpProxy(5432)
    const database = newName("pgdown")
    databases.push(database)
    const queue = `t.fault.pgdown.${Math.random().toString(36).slice(2, 8)}`
    queues.push(queue)
    const ownerId = "2200000001"
    const service = await startService(faultEnv(database, {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${proxy.port}/${database}`
    }))
    const consumer = await (async () => {
      await waitHealthy(service)
      await createWorkerApp(service, ownerId, queue)
      return collect(queue)
    })()
    try {
      proxy.cut()
      const during = await Promise.all(
        Array.from({ length: 20 }, (_, i) => postComment(service.baseUrl, ownerId, `pg-${i}`))
      )
      for (const response of during) {
        expect(response.status).toBe(503)
        expect(Number(response.retryAfter)).toBeGreaterThan(0)
      }
      const degraded = await health(service)
      expect(degraded.status).toBe(503)
      expect(degraded.body.failing).toContain("database")
      expect(alive(service)).toBe(true)

      proxy.restore()
      const deadline = Date.now() + 20_000
      let after = 0
      while (Date.now() < deadline && after !== 200) {
        after = (await postComment(service.baseUrl, ownerId, "pg-after")).status
        if (after !== 200) await sleep(200)
      }
      expect(after).toBe(200)
      expect(await consumer.waitFor(["pg-after"])).toEqual([])
      // Nothing half-accepted: only the event acknowledged after recovery is in the journal.
      expect(psql(database, "SELECT count(*) FROM webhook_events")).toBe("1")
    } finally {
      await consumer.close()
      await stopService(service)
      await proxy.close()
    }
  }, 90_000)

  it("broker closes every connection, then its app stops for a while: every acknowledged event is delivered", async () => {
    const { queue, ownerId, service } = await setup("broker")
    const consumer = await collect(queue)
    const load = steadyLoad(() => service.baseUrl, ownerId, 6)
    try {
      await sleep(1_500)
      execFileSync("rabbitmqctl", ["close_all_connections", "chatico fault test"], { stdio: "ignore" })
      await sleep(1_500)
      execFileSync("rabbitmqctl", ["stop_app"], { stdio: "ignore" })
      await sleep(4_000)
      execFileSync("rabbitmqctl", ["start_app"], { stdio: "ignore" })
      await sleep(2_000)
      await load.stop()
      expect(load.statuses.get(200) ?? 0).toBeGreaterThan(50)
      // The broker being away never turns into a refusal of webhooks.
      expect([...load.statuses.keys()].filter((status) => status !== 200)).toEqual([])
      const consumerAfter = await collect(queue)
      const missing = await consumerAfter.waitFor(load.acknowledged.filter((id) => !consumer.seen.has(id)), 40_000)
      expect(missing).toEqual([])
      await consumerAfter.close()
      expect(alive(service)).toBe(true)
    } finally {
      await load.stop()
      execFileSync("rabbitmqctl", ["start_app"], { stdio: "ignore" })
      await consumer.close()
      await stopService(service)
    }
  }, 120_000)

  it("SIGKILL while events are in flight, then a restart: every event that got 200 is delivered", async () => {
    const { database, queue, ownerId, service } = await setup("sigkill")
    const consumer = await collect(queue)
    let current: ServiceProcess = service
    const load = steadyLoad(() => current.baseUrl, ownerId, 8)
    try {
      await sleep(2_000)
      current.child.kill("SIGKILL")
      await current.exited
      await sleep(500)
      await load.stop()
      current = await startService(faultEnv(database), service.port)
      await waitHealthy(current)
      expect(load.acknowledged.length).toBeGreaterThan(50)
      expect(await consumer.waitFor(load.acknowledged, 40_000)).toEqual([])
      expect(Number(psql(database, "SELECT count(*) FROM webhook_events WHERE status = 'pending'"))).toBe(0)
    } finally {
      await load.stop()
      await consumer.close()
      await stopService(current)
    }
  }, 120_000)

  it("SIGTERM under load: exits 0 within 10 s and every acknowledged event is delivered or still journaled", async () => {
    const { database, queue, ownerId, service } = await setup("sigterm")
    const consumer = await collect(queue)
    const load = steadyLoad(() => service.baseUrl, ownerId, 8)
    try {
      await sleep(2_000)
      const started = Date.now()
      service.child.kill("SIGTERM")
      const { code } = await service.exited
      const elapsed = Date.now() - started
      await load.stop()
      expect(code).toBe(0)
      expect(elapsed).toBeLessThan(10_000)
      const journaled = new Set(
        psql(database, "SELECT value->>'id' FROM webhook_events").split("\n").filter((id) => id.length > 0)
      )
      const lost = load.acknowledged.filter((id) => !journaled.has(id))
      expect(lost).toEqual([])
      await sleep(1_000)
      const pending = Number(psql(database, "SELECT count(*) FROM webhook_events WHERE status = 'pending'"))
      const delivered = load.acknowledged.filter((id) => consumer.seen.has(id)).length
      expect(delivered + pending).toBeGreaterThanOrEqual(load.acknowledged.length)
    } finally {
      await load.stop()
      await consumer.close()
      await stopService(service)
    }
  }, 90_000)
})
