import amqp from "amqplib"
import { execFileSync } from "node:child_process"
import { performance } from "node:perf_hooks"
import { afterAll, describe, expect, it } from "vitest"
import {
  createWorkerApp,
  deleteQueues,
  dropDatabase,
  faultEnv,
  newName,
  postComment,
  type ServiceProcess,
  sleep,
  startService,
  stopService,
  waitHealthy
} from "./harness.ts"

// Order per account (CONTRACT "Order") across a broker connection loss and a crash.

const ACCOUNTS = 20
const WEBHOOKS_PER_ACCOUNT = 50
const SENDERS = 16

const databases: Array<string> = []
const queues: Array<string> = []
afterAll(async () => {
  for (const database of databases) dropDatabase(database)
  await deleteQueues(queues)
})

const setup = async (label: string) => {
  const database = newName(label)
  databases.push(database)
  const service = await startService(faultEnv(database))
  await waitHealthy(service)
  const prefix = `t.fault.${label}.${Math.random().toString(36).slice(2, 8)}`
  const accounts = Array.from({ length: ACCOUNTS }, (_, i) => ({
    ownerId: String(3_000_000 + Math.floor(Math.random() * 1_000_000) * 100 + i),
    queue: `${prefix}.${i}`
  }))
  for (const account of accounts) {
    queues.push(account.queue)
    await createWorkerApp(service, account.ownerId, account.queue)
  }
  return { database, service, accounts }
}

interface Arrival {
  readonly commentId: string
  readonly queue: string
  readonly at: number
}

/** A worker consuming every account queue, reconnecting at once when its connection is closed. */
const consumer = (accountQueues: ReadonlyArray<string>) => {
  const arrivals: Array<Arrival> = []
  let running = true
  let connection: amqp.ChannelModel | undefined
  const loop = async () => {
    while (running) {
      try {
        const current = await amqp.connect("amqp://guest:guest@127.0.0.1:5672")
        connection = current
        const closed = new Promise<void>((resolve) => current.on("close", () => resolve()))
        current.on("error", () => {})
        const channel = await current.createChannel()
        channel.on("error", () => {})
        await channel.prefetch(2000)
        for (const queue of accountQueues) {
          await channel.consume(queue, (message) => {
            if (message === null) return
            const body: unknown = JSON.parse(message.content.toString("utf8"))
            const value: unknown = typeof body === "object" && body !== null ? Reflect.get(body, "value") : undefined
            const id: unknown = typeof value === "object" && value !== null ? Reflect.get(value, "id") : undefined
            arrivals.push({ commentId: String(id), queue, at: performance.now() })
            channel.ack(message)
          })
        }
        await closed
      } catch {
        await sleep(100)
      }
    }
  }
  const done = loop()
  return {
    arrivals,
    stop: async () => {
      running = false
      await connection?.close().catch(() => {})
      await done
    }
  }
}

/**
 * Sixteen senders; each account's webhooks go one after another (the next once the last got 200),
 * retried like Meta retries while the service does not answer 200.
 */
const sendAll = (baseUrl: () => string, accounts: ReadonlyArray<{ readonly ownerId: string }>, onSent: (n: number) => void) => {
  const acknowledgedAt = new Map<string, number>()
  const sent = accounts.map((_, a) => Array.from({ length: WEBHOOKS_PER_ACCOUNT }, (_, i) => `o-${a}-${i}-${Math.random().toString(36).slice(2, 8)}`))
  const next = new Array<number>(accounts.length).fill(0)
  const busy = new Set<number>()
  let total = 0
  const sender = async () => {
    while (true) {
      const account = next.findIndex((i, a) => i < WEBHOOKS_PER_ACCOUNT && !busy.has(a))
      if (account === -1) {
        if (next.every((i) => i >= WEBHOOKS_PER_ACCOUNT)) return
        await sleep(2)
        continue
      }
      busy.add(account)
      const id = sent[account]![next[account]!]!
      while ((await postComment(baseUrl(), accounts[account]!.ownerId, id)).status !== 200) await sleep(100)
      acknowledgedAt.set(id, performance.now())
      next[account]!++
      busy.delete(account)
      onSent(++total)
    }
  }
  return { sent, acknowledgedAt, done: Promise.all(Array.from({ length: SENDERS }, sender)) }
}

/** Per queue, comment ids in order of first arrival (redelivered duplicates dropped). */
const firstArrivals = (arrivals: ReadonlyArray<Arrival>) => {
  const first = new Map<string, Arrival>()
  for (const arrival of arrivals) if (!first.has(arrival.commentId)) first.set(arrival.commentId, arrival)
  const byQueue = new Map<string, Array<string>>()
  for (const arrival of first.values()) {
    const list = byQueue.get(arrival.queue) ?? []
    list.push(arrival.commentId)
    byQueue.set(arrival.queue, list)
  }
  return { first, byQueue }
}

const waitFor = async (done: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!done() && Date.now() < deadline) await sleep(50)
}

const brokerConnected = async (service: ServiceProcess) => {
  const response = await fetch(`${service.baseUrl}/monitoring/health`).catch(() => undefined)
  if (response === undefined) return false
  const body: unknown = await response.json()
  const checks: unknown = typeof body === "object" && body !== null ? Reflect.get(body, "checks") : undefined
  const rabbit: unknown = typeof checks === "object" && checks !== null ? Reflect.get(checks, "rabbitmq") : undefined
  return typeof rabbit === "object" && rabbit !== null && Reflect.get(rabbit, "ok") === true
}

describe("delivery order under faults", () => {
  it("close_all_connections mid-stream: each account in order, everything within 2 s of the reconnect", async () => {
    const { service, accounts } = await setup("order_drop")
    const worker = consumer(accounts.map((a) => a.queue))
    let dropAt = 0
    let dropped: Promise<number> | undefined
    const load = sendAll(() => service.baseUrl, accounts, (n) => {
      if (n !== 400) return
      dropped = (async () => {
        dropAt = performance.now()
        execFileSync("rabbitmqctl", ["close_all_connections", "order test"], { stdio: "ignore" })
        // The service is connected again once its health says so.
        await sleep(50)
        while (!(await brokerConnected(service))) await sleep(20)
        return performance.now()
      })()
    })
    await load.done
    const reconnectAt = await (dropped ?? Promise.resolve(0))
    expect(dropAt).toBeGreaterThan(0)
    const expected = ACCOUNTS * WEBHOOKS_PER_ACCOUNT
    await waitFor(() => firstArrivals(worker.arrivals).first.size >= expected, 30_000)
    await worker.stop()
    await stopService(service)

    const { first, byQueue } = firstArrivals(worker.arrivals)
    expect(first.size).toBe(expected)
    accounts.forEach((account, a) => expect(byQueue.get(account.queue), `account ${a}`).toEqual(load.sent[a]))
    // Every event: at most 2 s after it was acknowledged, or after the reconnect if it was sent before it.
    let latest = 0
    for (const [id, acknowledged] of load.acknowledgedAt) {
      const arrival = first.get(id)?.at ?? Infinity
      const late = arrival - (acknowledged < reconnectAt && arrival > reconnectAt ? reconnectAt : acknowledged)
      latest = Math.max(latest, late)
    }
    console.log(`order | close_all_connections | reconnect ${(reconnectAt - dropAt).toFixed(0)} ms after the drop | latest delivery ${latest.toFixed(0)} ms after its acknowledgement or the reconnect`)
    expect(latest).toBeLessThan(2000)
  }, 120_000)

  it("SIGKILL mid-stream and a restart: every acknowledged event delivered, each account in order", async () => {
    const setupResult = await setup("order_kill")
    let service = setupResult.service
    const { database, accounts } = setupResult
    const worker = consumer(accounts.map((a) => a.queue))
    let restarted: Promise<void> | undefined
    const load = sendAll(() => service.baseUrl, accounts, (n) => {
      if (n !== 400) return
      restarted = (async () => {
        service.child.kill("SIGKILL")
        await service.exited
        service = await startService(faultEnv(database), service.port)
        await waitHealthy(service, 30_000)
      })()
    })
    await load.done
    await restarted
    const expected = ACCOUNTS * WEBHOOKS_PER_ACCOUNT
    await waitFor(() => firstArrivals(worker.arrivals).first.size >= expected, 60_000)
    await worker.stop()
    await stopService(service)

    const { first, byQueue } = firstArrivals(worker.arrivals)
    const lost = [...load.acknowledgedAt.keys()].filter((id) => !first.has(id))
    expect(lost).toEqual([])
    accounts.forEach((account, a) => expect(byQueue.get(account.queue), `account ${a}`).toEqual(load.sent[a]))
    console.log(`order | SIGKILL and restart | ${expected} acknowledged, ${lost.length} lost, ${worker.arrivals.length - first.size} duplicates`)
  }, 180_000)
})
