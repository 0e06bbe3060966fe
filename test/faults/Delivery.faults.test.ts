import { execFileSync } from "node:child_process"
import { readdirSync } from "node:fs"
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
  MAX_RSS_MB,
  printFigures,
  psql,
  rssMb,
  type ServiceProcess,
  sleep,
  startService,
  steadyLoad,
  stopService,
  tally,
  waitHealthy
} from "./harness.ts"

const databases: Array<string> = []
const queues: Array<string> = []
afterAll(async () => {
  printFigures()
  for (const database of databases) dropDatabase(database)
  await deleteQueues(queues)
})

const rabbitmqctl = (...args: Array<string>) => execFileSync("rabbitmqctl", args, { stdio: "ignore" })

/** The machine's own PostgreSQL cluster (the fault suite runs alone, so stopping it harms no one). */
const postgres = (action: "stop" | "start", ...args: Array<string>) => {
  const version = readdirSync("/etc/postgresql")[0] ?? "15"
  try {
    execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", action, ...args], { stdio: "ignore" })
  } catch {
    // `start` on a running cluster fails: that is the state we want.
  }
}

const waitForPostgres = async () => {
  for (let i = 0; i < 60; i++) {
    try {
      execFileSync("pg_isready", ["-h", "127.0.0.1", "-q"])
      return
    } catch {
      await sleep(500)
    }
  }
}

const setup = async (label: string, env: Record<string, string> | ((database: string) => Record<string, string>) = {}) => {
  const database = newName(label)
  databases.push(database)
  const queue = `t.fault.${label}.${Math.random().toString(36).slice(2, 8)}`
  queues.push(queue)
  const ownerId = String(1_000_000 + Math.floor(Math.random() * 1_000_000))
  const service = await startService(faultEnv(database, typeof env === "function" ? env(database) : env))
  await waitHealthy(service)
  await createWorkerApp(service, ownerId, queue)
  return { database, queue, ownerId, service }
}

const health = async (service: ServiceProcess) => {
  const response = await fetch(`${service.baseUrl}/monitoring/health`)
  return { status: response.status, body: await response.json() as { status: string; failing?: Array<string> } }
}

const alive = (service: ServiceProcess) => service.child.exitCode === null && service.child.signalCode === null

const pendingCount = (database: string) =>
  Number(psql(database, "SELECT count(*) FROM webhook_events WHERE status = 'pending'"))

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
      expect(pendingCount(database)).toBe(50)
      expect(consumer.seen.size).toBe(0)

      proxy.restore()
      expect(await consumer.waitFor(ids)).toEqual([])
      expect(tally("RabbitMQ unreachable (connections cut)", 1, ids, consumer.seen).duplicates).toBe(0)
      // Outcomes are written back in batches, a moment after the confirms.
      const routed = () => Number(psql(database, "SELECT count(*) FROM webhook_events WHERE status = 'routed'"))
      for (let i = 0; i < 50 && routed() !== 50; i++) await sleep(100)
      expect(routed()).toBe(50)
      expect((await health(service)).status).toBe(200)
      expect(alive(service)).toBe(true)
    } finally {
      await consumer.close()
      await stopService(service)
      await proxy.close()
    }
  }, 90_000)

  it("PostgreSQL unreachable for 8 s under load: one log line when it is lost, one when it is back, the journal's failures rate-limited", async () => {
    const proxy = await startTcpProxy(5432)
    const { ownerId, service } = await setup("pgcut", (database) => ({
      DATABASE_URL: `postgres://postgres@127.0.0.1:${proxy.port}/${database}`
    }))
    const load = steadyLoad(() => service.baseUrl, ownerId, 6)
    const lines = (message: string) =>
      service.output().split("\n").filter((line) => line.includes(`"message":"${message}"`))
    try {
      await sleep(1_500)
      proxy.cut()
      await sleep(8_000)
      const refused = load.statuses.get(503) ?? 0
      expect(lines("database unreachable")).toHaveLength(1)
      expect(lines("database reconnected")).toEqual([])
      proxy.restore()
      await sleep(5_000)
      await load.stop()
      expect(refused).toBeGreaterThan(10)
      const back = lines("database reconnected")
      expect(back, service.output().slice(-3000)).toHaveLength(1)
      expect(Number(JSON.parse(back[0]!).annotations.down_ms)).toBeGreaterThan(5_000)
      expect(lines("database unreachable")).toHaveLength(1)
      // Every batch of the outage failed, but the journal said so once per 10 s at most.
      expect(lines("journal batch failed: database unavailable").length).toBeLessThanOrEqual(2)
      expect((await health(service)).status).toBe(200)
    } finally {
      await load.stop()
      await stopService(service)
      await proxy.close()
    }
  }, 90_000)

  it("PostgreSQL stopped for 20 s under load: 503 + Retry-After, never 200, then normal service without a restart", async () => {
    const { queue, ownerId, service } = await setup("pgstop")
    const consumer = await collect(queue)
    const load = steadyLoad(() => service.baseUrl, ownerId, 6)
    try {
      await sleep(2_000)
      const before = load.acknowledged.length
      postgres("stop", "-m", "fast")
      const stopped = Date.now()
      await sleep(1_000)
      const degraded = await health(service)
      expect(degraded.status).toBe(503)
      expect(degraded.body.failing).toContain("database")
      const probe = await postComment(service.baseUrl, ownerId, "pg-probe")
      expect(probe.status).toBe(503)
      expect(Number(probe.retryAfter)).toBeGreaterThan(0)
      await sleep(19_000)
      // Not one webhook sent while Postgres was down was acknowledged (answers to
      // requests committed just before the stop may arrive after it).
      const restarting = Date.now()
      expect(load.acknowledged.filter((id) => (load.sentAt.get(id) ?? 0) > stopped)).toEqual([])
      expect(alive(service)).toBe(true)
      postgres("start")
      await waitForPostgres()
      await sleep(5_000)
      await load.stop()
      // The pool reconnected by itself: webhooks are acknowledged again, no restart.
      expect(load.acknowledged.filter((id) => (load.sentAt.get(id) ?? 0) > restarting).length).toBeGreaterThan(0)
      expect(before).toBeGreaterThan(0)
      expect((await health(service)).status).toBe(200)
      expect(await consumer.waitFor(load.acknowledged)).toEqual([])
      tally("PostgreSQL stopped for 20 s, then started", 1, load.acknowledged, consumer.seen)
    } finally {
      postgres("start")
      await waitForPostgres()
      await load.stop()
      await consumer.close()
      await stopService(service)
    }
  }, 120_000)

  it("broker closes every connection, then its app stops for 20 s: webhooks get 200 throughout, every one is delivered", async () => {
    const { queue, ownerId, service } = await setup("broker")
    const load = steadyLoad(() => service.baseUrl, ownerId, 6)
    try {
      await sleep(1_500)
      rabbitmqctl("close_all_connections", "chatico fault test")
      await sleep(1_500)
      rabbitmqctl("stop_app")
      await sleep(20_000)
      // 20 s of webhooks piling up as pending: memory stays bounded.
      const rss = rssMb(service)
      rabbitmqctl("start_app")
      await sleep(2_000)
      await load.stop()
      expect(load.statuses.get(200) ?? 0).toBeGreaterThan(100)
      // The broker being away never turns into a refusal of webhooks.
      expect([...load.statuses.keys()].filter((status) => status !== 200)).toEqual([])
      expect(alive(service)).toBe(true)
      expect(rss).toBeLessThan(MAX_RSS_MB)
      // Reconnects were tried every 0.5–10 s for 20 s; the log says so at most once per 30 s.
      const unavailable = service.output().split("\n").filter((line) => line.includes("RabbitMQ unavailable, reconnecting"))
      expect(unavailable.length, unavailable.join("\n")).toBeLessThanOrEqual(2)
      // Our consumers were cut too: count from a fresh one over whatever is in the queue now,
      // plus what was consumed before (the queue only loses what a consumer acked).
      const consumer = await collect(queue)
      const missing = await consumer.waitFor(load.acknowledged, 40_000)
      await consumer.close()
      expect(missing).toEqual([])
      tally("RabbitMQ connections closed, then app stopped 20 s", 1, load.acknowledged, consumer.seen)
    } finally {
      await load.stop()
      rabbitmqctl("start_app")
      await stopService(service)
    }
  }, 120_000)

  it("memory alarm blocks publishers: webhooks get 200, events wait, all are delivered after", async () => {
    const { queue, ownerId, service } = await setup("alarm")
    const consumer = await collect(queue)
    const load = steadyLoad(() => service.baseUrl, ownerId, 6)
    try {
      await sleep(1_500)
      rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
      await sleep(12_000)
      const during = await health(service)
      const rss = rssMb(service)
      rabbitmqctl("set_vm_memory_high_watermark", "0.4")
      await sleep(2_000)
      await load.stop()
      expect([...load.statuses.keys()].filter((status) => status !== 200)).toEqual([])
      expect(during.body.failing ?? []).toContain("rabbitmq")
      expect(rss).toBeLessThan(MAX_RSS_MB)
      expect(await consumer.waitFor(load.acknowledged, 60_000)).toEqual([])
      tally("RabbitMQ memory alarm (publishers blocked) 12 s", 1, load.acknowledged, consumer.seen)
      expect(alive(service)).toBe(true)
    } finally {
      rabbitmqctl("set_vm_memory_high_watermark", "0.4")
      await load.stop()
      await consumer.close()
      await stopService(service)
    }
  }, 120_000)

  it("SIGKILL at random moments five times in a row, restarted each time: every acknowledged event is delivered", async () => {
    const { database, queue, ownerId, service } = await setup("sigkill")
    const consumer = await collect(queue)
    let current: ServiceProcess = service
    const load = steadyLoad(() => current.baseUrl, ownerId, 8)
    try {
      for (let round = 0; round < 5; round++) {
        await sleep(1_000 + Math.floor(Math.random() * 2_000))
        current.child.kill("SIGKILL")
        await current.exited
        current = await startService(faultEnv(database), service.port)
        await waitHealthy(current)
      }
      await sleep(1_000)
      await load.stop()
      expect(load.acknowledged.length).toBeGreaterThan(100)
      expect(await consumer.waitFor(load.acknowledged, 60_000)).toEqual([])
      tally("SIGKILL ×5 at random moments, restarted", 5, load.acknowledged, consumer.seen)
      await sleep(500)
      expect(pendingCount(database)).toBe(0)
    } finally {
      await load.stop()
      await consumer.close()
      await stopService(current)
    }
  }, 180_000)

  it("SIGTERM under load: new webhooks get 503 or are refused, exit 0 within 10 s, nothing acknowledged lost", async () => {
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
      // After the signal: 200 only for requests already in flight, then 503s and refused connections.
      expect([...load.statuses.keys()].every((status) => [0, 200, 503].includes(status))).toBe(true)
      const journaled = new Set(
        psql(database, "SELECT value_raw::jsonb->>'id' FROM webhook_events").split("\n").filter((id) => id.length > 0)
      )
      expect(load.acknowledged.filter((id) => !journaled.has(id))).toEqual([])
      await sleep(1_000)
      const delivered = load.acknowledged.filter((id) => consumer.seen.has(id)).length
      expect(delivered + pendingCount(database)).toBeGreaterThanOrEqual(load.acknowledged.length)
      tally("SIGTERM under load (drained, then restart not needed)", 1, load.acknowledged, consumer.seen)
    } finally {
      await load.stop()
      await consumer.close()
      await stopService(service)
    }
  }, 90_000)

  it("two instances on one database and broker: none delivered twice; one killed mid-stream: none lost", async () => {
    const { database, queue, ownerId, service: first } = await setup("twins")
    const second = await startService(faultEnv(database))
    await waitHealthy(second)
    const consumer = await collect(queue)
    let turn = 0
    const targets = [first, second]
    const load = steadyLoad(() => targets[turn++ % targets.length]!.baseUrl, ownerId, 8)
    try {
      await sleep(4_000)
      const calm = [...load.acknowledged]
      expect(await consumer.waitFor(calm, 30_000)).toEqual([])
      // Normal operation: the two recovery sweepers never deliver one event twice.
      expect(tally("two instances, normal operation", 1, calm, consumer.seen).duplicates).toBe(0)
      first.child.kill("SIGKILL")
      await first.exited
      targets.splice(0, 1)
      await sleep(4_000)
      await load.stop()
      expect(await consumer.waitFor(load.acknowledged, 60_000)).toEqual([])
      tally("two instances, one SIGKILLed mid-stream", 1, load.acknowledged, consumer.seen)
      expect(alive(second)).toBe(true)
    } finally {
      await load.stop()
      await consumer.close()
      await stopService(first)
      await stopService(second)
    }
  }, 120_000)
})
