/** The baseline phase: bench/baseline.ts (verify, parse, publish with confirm; no database) measured like the service. */
import { randomBytes, randomInt } from "node:crypto"
import amqp from "amqplib"
import { freePort } from "../test/support/ServiceProcess.ts"
import { onCleanup } from "./Cleanup.ts"
import { declareAppQueue, deleteQueues } from "./Deliveries.ts"
import { log } from "./load.ts"
import { bodiesFor, type Workload } from "./Measure.ts"
import { measureTarget } from "./Overload.ts"
import { reportFailure, startChild, stopChild, waitHttp200 } from "./Processes.ts"
import type { Settings } from "./Settings.ts"

export const runBaselinePhase = async (settings: Settings, runId: string, workload: Workload) => {
  const { owners } = workload
  const port = await freePort()
  const secret = randomBytes(24).toString("hex")
  const queues = owners.map((_, i) => `bench.${runId}.base.q${i}`)
  onCleanup("delete the baseline's bench queues", async () => {
    const n = await deleteQueues(settings.rabbitmqUrl, queues.flatMap((q) => [q, `${q}.dlq`]))
    log(`deleted ${n} baseline bench queues`)
  })
  const connection = await amqp.connect(settings.rabbitmqUrl)
  connection.on("error", () => {})
  try {
    const channel = await connection.createChannel()
    for (const queue of queues) await declareAppQueue(channel, queue, settings.queueType)
    await channel.close()
  } finally {
    await connection.close().catch(() => {})
  }
  const routes = Object.fromEntries(owners.map((owner, i) => [owner, queues[i]!]))
  log(`baseline: starting bench/baseline.ts on 127.0.0.1:${port} (${settings.queueType} queues)`)
  const proc = startChild(
    "baseline",
    "bench/baseline.ts",
    {
      PATH: process.env.PATH ?? "",
      BASELINE_PORT: String(port),
      BASELINE_HOST: "127.0.0.1",
      BASELINE_SECRET: secret,
      BASELINE_ROUTES: JSON.stringify(routes),
      RABBITMQ_URL: settings.rabbitmqUrl
    },
    runId
  )
  let stopped = false
  const stop = async () => {
    if (stopped) return undefined
    stopped = true
    return stopChild(proc)
  }
  onCleanup("stop the baseline", stop)
  try {
    await waitHttp200(proc, `http://127.0.0.1:${port}/health`, 30_000)
    const result = await measureTarget(
      "baseline",
      settings,
      { port, secret, proc },
      owners,
      queues,
      `8${randomInt(1e5, 1e6)}2`,
      bodiesFor(workload, false)
    )
    const stopResult = await stop()
    if (stopResult !== undefined && !stopResult.alreadyExited) {
      result.notes.push(`SIGTERM → exit in ${(stopResult.ms / 1000).toFixed(2)} s (code ${stopResult.code})`)
    }
    return result
  } catch (err) {
    reportFailure("baseline", proc, err)
    throw err
  }
}
