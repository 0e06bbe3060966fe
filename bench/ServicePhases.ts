/**
 * The service phases: src/main.ts started with its own database, queues and worker apps, measured
 * in one window, or side by side with a second service in alternating windows (the comparisons).
 */
import { randomBytes, randomInt } from "node:crypto"
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import amqp from "amqplib"
import { dropDatabase, freePort, postWorkerApp } from "../test/support/ServiceProcess.ts"
import { isInterrupted, onCleanup } from "./Cleanup.ts"
import { declareAppQueue, deleteQueues, queueDepth } from "./Deliveries.ts"
import { log } from "./load.ts"
import { bodiesFor, type PhaseResult, type Workload } from "./Measure.ts"
import { measureTarget } from "./Overload.ts"
import { type OtlpSink, sinkNotes, startOtlpSink, windowExports } from "./OtlpSink.ts"
import { graphFigures, graphNotes, type OwnerLookups, startOwnerLookups } from "./OwnerLookups.ts"
import { type Child, reportFailure, startChild, stopChild, waitHttp200 } from "./Processes.ts"
import { describeGraphLimits, isSideB, phaseName, type ServicePhase, SETTLE_S, type Settings } from "./Settings.ts"

/** A service child that is up, has its worker apps and queues, and can be measured (more than once). */
interface RunningService {
  readonly phase: ServicePhase
  readonly port: number
  readonly secret: string
  readonly proc: Child
  /** Its Postgres database (its backends' CPU is the service's Postgres CPU). */
  readonly database: string
  readonly queues: ReadonlyArray<string>
  /** The bench's OTLP sink, when this service exports traces. */
  readonly sink: OtlpSink | undefined
  readonly standIn: OwnerLookups | undefined
  /** Notes on how the service was set up, for each of its results. */
  readonly notes: ReadonlyArray<string>
  readonly stop: () => Promise<Awaited<ReturnType<typeof stopChild>> | undefined>
  /** performance.now() of the SIGTERM, once stopped. */
  readonly stoppedAt: () => number | undefined
}

/** Starts src/main.ts with its own database and queues and creates the bench's worker apps. */
const startService = async (settings: Settings, runId: string, workload: Workload, phase: ServicePhase, name: string): Promise<RunningService> => {
  const { owners } = workload
  const tracing = phase.tracing
  const dbName = `chatico_bench_${runId}`
  const port = await freePort()
  const secret = randomBytes(24).toString("hex")
  const secretKey = randomBytes(24).toString("hex")
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    PORT: String(port),
    HOST: "127.0.0.1",
    DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${dbName}`,
    RABBITMQ_URL: settings.rabbitmqUrl,
    INSTAGRAM_APP_SECRET: secret,
    WEBHOOK_VERIFY_TOKEN: randomBytes(12).toString("hex"),
    SECRET_KEY: secretKey,
    LOG_LEVEL: "warn",
    OWNER_RESOLUTION: phase.ownerResolution
  }
  const passThrough = [
    "INSTAGRAM_ACCESS_TOKEN",
    "INSTAGRAM_APP_ID",
    "QUEUE_TYPE",
    "MAX_BODY_BYTES",
    "NODE_ENV",
    "NODE_OPTIONS",
    // The access log's cost: LOG_LEVEL=info ACCESS_LOG=true vs ACCESS_LOG=false.
    "LOG_LEVEL",
    "ACCESS_LOG"
  ]
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (key.startsWith("OTEL_") || key.startsWith("RATE_LIMIT") || key.startsWith("GRAPH_") || key.startsWith("JOURNAL_") || passThrough.includes(key)) env[key] = value
  }
  // Both phases of a comparison get the same Graph API limits (the entry phase never uses them).
  if (settings.graphLimits?.setByBench === true) env.GRAPH_API_CALLS_PER_SECOND = String(settings.graphLimits.callsPerSecond)
  // --graph-standin: the stand-in is the service's Graph API, with a token of the bench's.
  let standIn: OwnerLookups | undefined
  if (phase.graphStandIn) {
    if (workload.mediaOwners === undefined) throw new Error("--graph-standin without a media → owner map")
    const token = `IGQVJ-bench-${randomBytes(16).toString("hex")}`
    standIn = await startOwnerLookups(workload.mediaOwners, token, secret)
    const started = standIn
    onCleanup("stop the Graph API stand-in", () => started.close()) // registered first: runs after the service stopped
    env.GRAPH_API_URL = standIn.url
    env.INSTAGRAM_ACCESS_TOKEN = token
    log(
      `${name}: Graph API stand-in on ${standIn.url} for ${workload.mediaOwners.size} media; every entry[].id is ${workload.account} ` +
        `(no worker app); ${describeGraphLimits(settings.graphLimits!, workload.mediaOwners.size)}`
    )
  }
  // --tracing / --compare-tracing: the sink is the only destination of this service's traces, and
  // the untraced service of a comparison exports nothing.
  let sink: OtlpSink | undefined
  if (tracing) {
    sink = await startOtlpSink(settings.otlpProtocol)
    const started = sink
    onCleanup("stop the OTLP sink", () => started.close()) // registered first: runs after the service stopped
    delete env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    delete env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
    delete env.OTEL_SDK_DISABLED
    env.OTEL_EXPORTER_OTLP_ENDPOINT = sink.endpoint
    env.OTEL_EXPORTER_OTLP_PROTOCOL = sink.protocol
    log(
      `${name}: OTLP sink (${sink.protocol}) on ${sink.endpoint}; sampler ` +
        (env.OTEL_TRACES_SAMPLER ? `${env.OTEL_TRACES_SAMPLER}${env.OTEL_TRACES_SAMPLER_ARG ? ` (arg ${env.OTEL_TRACES_SAMPLER_ARG})` : ""}` : "default")
    )
  } else if (settings.compareTracing) {
    delete env.OTEL_EXPORTER_OTLP_ENDPOINT
    delete env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  }
  // The bench is a single client: the service's per-client webhook limit would cap whichever
  // service is faster and hide the cost of tracing (or of owner resolution), and would answer an
  // overload with 429 before the service's own shedding. A comparison and --overload turn it off
  // unless RATE_LIMIT_WEBHOOK is set.
  const limiterOff = (settings.compareTracing || settings.compareOwnerResolution || settings.overload !== undefined) &&
    process.env.RATE_LIMIT_WEBHOOK === undefined
  if (limiterOff) env.RATE_LIMIT_WEBHOOK = "0"
  const queues = owners.map((_, i) => `bench.${runId}.q${i}`)
  onCleanup("drop the bench database", async () => {
    dropDatabase(dbName)
    log(`dropped database ${dbName}`)
  })
  onCleanup("delete the service's bench queues", async () => {
    const n = await deleteQueues(settings.rabbitmqUrl, queues.flatMap((q) => [q, `${q}.dlq`]))
    log(`deleted ${n} service bench queues`)
  })

  log(`${name}: starting src/main.ts on 127.0.0.1:${port}, database ${dbName}, OWNER_RESOLUTION=${phase.ownerResolution}`)
  const proc = startChild(name, "src/main.ts", env, runId)
  let stopped = false
  let stoppedAt: number | undefined
  const stop = async () => {
    if (stopped) return undefined
    stopped = true
    stoppedAt = performance.now()
    const result = await stopChild(proc)
    log(
      result.alreadyExited
        ? `${name} had already exited (code ${result.code}, signal ${result.signal})`
        : `${name} exited ${(result.ms / 1000).toFixed(2)} s after SIGTERM (code ${result.code}, signal ${result.signal}${result.killed ? ", SIGKILLed after 30 s" : ""})`
    )
    return result
  }
  onCleanup("stop the service", stop)
  log(`${name}: log at ${proc.logFile}`)
  try {
    const healthyMs = await waitHttp200(proc, `http://127.0.0.1:${port}/monitoring/health`, 60_000)
    log(`${name}: healthy after ${(healthyMs / 1000).toFixed(1)} s`)

    const notes: Array<string> = []
    for (const [i, owner] of owners.entries()) await postWorkerApp({ baseUrl: `http://127.0.0.1:${port}` }, secretKey, owner, queues[i]!)
    log(`${name}: created ${owners.length} worker apps`)

    // The contract says each app's queue exists when POST /worker-apps/ returns 201.
    const connection = await amqp.connect(settings.rabbitmqUrl)
    connection.on("error", () => {})
    try {
      const missing: Array<string> = []
      for (const queue of queues) if ((await queueDepth(connection, queue)) === undefined) missing.push(queue)
      if (missing.length > 0) {
        notes.push(`the service had not declared ${missing.length} of ${queues.length} app queues after 201; the bench declared them (${settings.queueType})`)
        log(`WARNING: ${notes[notes.length - 1]}`)
        const channel = await connection.createChannel()
        for (const queue of missing) await declareAppQueue(channel, queue, settings.queueType)
        await channel.close()
      }
    } finally {
      await connection.close().catch(() => {})
    }
    if (limiterOff) {
      notes.push(
        `webhook rate limit off (RATE_LIMIT_WEBHOOK=0), ${settings.overload === undefined ? "as in the other phase of the comparison" : "so the overload meets the service's own shedding"}`
      )
    }
    if (sink === undefined && settings.compareTracing) notes.push(`tracing off (no OTLP endpoint passed to the service)`)
    return { phase, port, secret, proc, database: dbName, queues, sink, standIn, notes, stop, stoppedAt: () => stoppedAt }
  } catch (err) {
    reportFailure(name, proc, err)
    throw err
  }
}

/** One measured window (warm-up + duration) of a running service. */
const measureService = async (settings: Settings, workload: Workload, service: RunningService, name: string): Promise<PhaseResult> => {
  try {
    const measured = await measureTarget(
      name,
      settings,
      service,
      workload.owners,
      service.queues,
      `9${randomInt(1e5, 1e6)}${service.phase.tracing ? 3 : 1}`,
      bodiesFor(workload, service.phase.graphStandIn)
    )
    const { standIn, sink } = service
    const graph = standIn === undefined ? undefined : graphFigures(standIn, measured.load, workload.mediaOwners?.size ?? 0)
    const result: PhaseResult = { ...measured, phase: service.phase, ...(graph === undefined ? {} : { graph }) }
    result.notes.unshift(...service.notes)
    if (standIn !== undefined && graph !== undefined) {
      result.notes.push(...graphNotes(standIn, graph, result.load))
      if (settings.graphLimits?.setByBench === true) result.notes.push(describeGraphLimits(settings.graphLimits, graph.mediaInBodies))
    }
    if (!service.proc.isRunning()) result.notes.push(`the service process died during the run (see ${service.proc.logFile})`)
    return sink === undefined ? result : { ...result, tracing: windowExports(sink, result.load) }
  } catch (err) {
    reportFailure(name, service.proc, err)
    throw err
  }
}

/**
 * SIGTERM; what the exit and (with tracing) the sink say goes into the notes of the last window.
 * Spans per event count the events of `unmeasured` load too (they were exported as well).
 */
const stopService = async (service: RunningService, windows: ReadonlyArray<PhaseResult>, unmeasured?: PhaseResult) => {
  const last = windows[windows.length - 1]
  const stopResult = await service.stop()
  if (last === undefined) return
  if (stopResult !== undefined && !stopResult.alreadyExited) {
    last.notes.push(`SIGTERM → exit in ${(stopResult.ms / 1000).toFixed(2)} s (code ${stopResult.code}${stopResult.killed ? ", had to SIGKILL" : ""})`)
  }
  if (service.sink === undefined) return
  await sleep(200) // a final export the exporter sent while the process exited
  const accepted = windows.reduce((sum, r) => sum + r.expectedEvents, unmeasured?.expectedEvents ?? 0)
  last.notes.push(...sinkNotes(service.sink, windows.map((r) => r.load), accepted, service.stoppedAt()))
}

/** One service, one window: start, measure, stop. */
export const runServicePhase = async (settings: Settings, runId: string, workload: Workload, phase: ServicePhase) => {
  const name = phaseName(settings, phase)
  const service = await startService(settings, runId, workload, phase, name)
  const result = await measureService(settings, workload, service, name)
  await stopService(service, [result])
  return result
}

/**
 * --compare-tracing / --compare-owner-resolution: the two services of the comparison run side by
 * side (each with its own database and queues); the load goes to one at a time, in windows that
 * alternate A, B / B, A / … over `rounds` rounds. Both see the same machine minute by minute, so a
 * drift in what else the machine does shifts both alike.
 */
export const runSideBySide = async (settings: Settings, runId: string, workload: Workload) => {
  const sideOf = (phase: ServicePhase) => isSideB(settings, phase)
  const first = settings.servicePhases.find((phase) => !sideOf(phase))!
  const second = settings.servicePhases.find((phase) => sideOf(phase))!
  const baseName = (phase: ServicePhase) => phaseName({ ...settings, rounds: 1 }, phase)
  const a = await startService(settings, runId, workload, { ...first, round: 0 }, baseName(first))
  const b = await startService(settings, `${runId}${settings.compareTracing ? "t" : "g"}`, workload, { ...second, round: 0 }, baseName(second))
  const serviceOf = (phase: ServicePhase) => (sideOf(phase) ? b : a)
  // Unmeasured load first, so the windows compare warm services (and, with the Graph API
  // stand-in, a warm owner cache), not V8 compiling one of them.
  const settling = new Map<RunningService, PhaseResult>()
  for (const service of [a, b]) {
    if (isInterrupted()) break
    const name = `${baseName(service.phase)} (settling)`
    const settled = await measureService({ ...settings, warmupS: 0, durationS: SETTLE_S }, workload, service, name)
    settling.set(service, settled)
    log(`${name}: ${settled.delivered} events delivered, not measured`)
  }
  const results: Array<PhaseResult> = []
  for (const phase of settings.servicePhases) {
    if (isInterrupted()) break
    const result = await measureService(settings, workload, { ...serviceOf(phase), phase }, phaseName(settings, phase))
    results.push(result)
  }
  for (const service of [a, b]) {
    const windows = results.filter((r) => sideOf(r.phase!) === sideOf(service.phase))
    await stopService(service, windows, settling.get(service))
  }
  return results
}
