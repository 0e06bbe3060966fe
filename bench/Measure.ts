/** One measured window against a target: the bodies, the load, the wait for deliveries, the figures and notes. */
import { execFile } from "node:child_process"
import { randomInt } from "node:crypto"
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import { promisify } from "node:util"
import { type Consumers, type ConsumerStats, queueDepth, startConsumers } from "./Deliveries.ts"
import { fmt, formatCounts, type LoadResult, log, makeBodyFactory, mediaIdsFor, runLoad } from "./load.ts"
import type { GraphFigures } from "./OwnerLookups.ts"
import { type PacedResult, PACED_DRAIN_MS, runPacedLoad } from "./PacedLoad.ts"
import { type Child, groupCpuDelta, groupCpuSeconds, sampleRssSeries } from "./Processes.ts"
import type { ServicePhase, Settings } from "./Settings.ts"

export interface PhaseResult {
  readonly name: string
  readonly load: LoadResult
  readonly eventsPerBody: number
  readonly durationS: number
  readonly expectedEvents: number
  readonly delivered: number
  readonly deliveredRate: number | undefined
  readonly duplicates: number
  readonly e2e: Float64Array
  readonly peakRssMb: number
  readonly cpuPct: number | undefined
  /** CPU of the target's Postgres processes and of RabbitMQ over the window (100 = one core). */
  readonly postgresCpuPct: number | undefined
  readonly rabbitmqCpuPct: number | undefined
  /** Postgres WAL bytes per second over the window (cluster-wide). */
  readonly walBytesPerS: number | undefined
  readonly notes: Array<string>
  /** What the bench's OTLP sink received (phases with tracing on). */
  readonly tracing?: { readonly exportRequests: number; readonly exportBytes: number; readonly spans: number | undefined }
  /** The service phase measured (undefined for the baseline). */
  readonly phase?: ServicePhase
  /** Messages whose x-owner-id is not their queue's owner. */
  readonly misrouted: number
  /** With the media check (--graph-standin, --compare-owner-resolution): messages in another app's queue than their media owner's. */
  readonly misroutedByMedia: number
  /** With the media check: messages whose media_id is missing or not the bench's. */
  readonly unknownMedia: number
  /** What the Graph API stand-in answered (phases with --graph-standin). */
  readonly graph?: GraphFigures
  /** The paced load's own figures (--rate, --overload): the same object as `load`. */
  readonly paced?: PacedResult
  /** Paced windows: the target's VmRSS in MB, once a second from the load's start to its end. */
  readonly rssMb?: ReadonlyArray<number>
  /** --overload: what the closed-loop window before it sustained, and the factor applied. */
  readonly overload?: { readonly factor: number; readonly sustainedReqPerS: number }
}

/** What the bodies carry. */
export interface Workload {
  /** owner_id of each worker app. */
  readonly owners: ReadonlyArray<string>
  /** An account no worker app serves: every entry[].id in the phases with the stand-in. */
  readonly account: string
  /** The media of each owner (--graph-standin, --compare-owner-resolution), undefined otherwise. */
  readonly media: ReadonlyArray<ReadonlyArray<string>> | undefined
  /** media id → owner, for the stand-in and the consumers' check. */
  readonly mediaOwners: ReadonlyMap<string, string> | undefined
}

/** The worker apps' owners, the account none of them serves, and (owner-aware runs) each owner's media. */
export const makeWorkload = (settings: Settings): Workload => {
  const ownerDigits = randomInt(1e5, 1e6)
  const ownerBase = `1784${ownerDigits}`
  const owners = Array.from({ length: settings.apps }, (_, i) => `${ownerBase}${String(i).padStart(4, "0")}`)
  const media = settings.ownerAware ? mediaIdsFor(owners, settings.mediaPerApp) : undefined
  return {
    owners,
    // as long as an owner id (the bodies keep their size), and no worker app's (1783… vs 1784…)
    account: `1783${ownerDigits}${"0".repeat(4)}`,
    media,
    mediaOwners: media === undefined ? undefined : new Map(media.flatMap((list, i) => list.map((id) => [id, owners[i]!] as const)))
  }
}

/** How one phase's bodies are made and checked. */
interface Bodies {
  readonly media?: ReadonlyArray<ReadonlyArray<string>>
  readonly entryId?: string
  readonly mediaOwners?: ReadonlyMap<string, string>
}

export const bodiesFor = (workload: Workload, graphStandIn: boolean): Bodies => ({
  ...(workload.media === undefined ? {} : { media: workload.media }),
  ...(workload.mediaOwners === undefined ? {} : { mediaOwners: workload.mediaOwners }),
  ...(graphStandIn ? { entryId: workload.account } : {})
})

/** The cluster's WAL written so far (`pg_stat_wal`; backends report it at most once a second), undefined when unreadable. */
const walBytes = (): Promise<number | undefined> =>
  promisify(execFile)("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc", "SELECT wal_bytes FROM pg_stat_wal"], {
    timeout: 10_000
  }).then(({ stdout }) => Number(stdout.trim()), () => undefined)

/**
 * Postgres processes counted for a target: the background ones (WAL writer, checkpointer, …) and
 * the client backends of its database (`database` undefined: none), not other databases' backends.
 */
const postgresOf = (database: string | undefined) => (cmdline: string) => {
  if (!cmdline.startsWith("postgres: ")) return false // the postmaster itself, or a psql client
  const client = /^postgres: (?:\S+: )?\S+ (\S+) (?:\[local\]|\S+\(\d+\))/.exec(cmdline)
  return client === null || client[1] === database
}

const waitForDeliveries = async (consumers: Consumers, expected: number, maxMs = 30_000, stallMs = 10_000) => {
  const t0 = performance.now()
  let last = consumers.stats().unique
  let lastChange = t0
  for (;;) {
    const now = performance.now()
    const { unique } = consumers.stats()
    if (unique >= expected) return { complete: true, waitedMs: now - t0, reason: "" }
    if (unique !== last) {
      last = unique
      lastChange = now
    }
    if (now - lastChange >= stallMs) {
      return { complete: false, waitedMs: now - t0, reason: `no new delivery for ${stallMs / 1000} s` }
    }
    if (now - t0 >= maxMs) return { complete: false, waitedMs: now - t0, reason: `still incomplete after ${maxMs / 1000} s` }
    await sleep(100)
  }
}

export const measurePhase = async (
  name: string,
  settings: Settings,
  target: { readonly port: number; readonly secret: string; readonly proc: Child; readonly database?: string },
  owners: ReadonlyArray<string>,
  queues: ReadonlyArray<string>,
  idPrefix: string,
  bodies: Bodies = {},
  /** Requests per second of an open-loop (paced) window; undefined: the closed loop at --concurrency. */
  rate?: number
): Promise<PhaseResult> => {
  const notes: Array<string> = []
  const consumers = await startConsumers(
    settings.rabbitmqUrl,
    queues.map((queue, i) => ({ queue, owner: owners[i]! })),
    bodies.mediaOwners === undefined ? {} : { mediaOwners: bodies.mediaOwners }
  )
  try {
    const unroutableBefore = await queueDepth(consumers.connection, "chatico.unroutable")
    const factory = makeBodyFactory({
      owners,
      changesPerBody: settings.changesPerBody,
      idPrefix,
      mediaPerOwner: settings.mediaPerApp,
      ...(bodies.media === undefined ? {} : { media: bodies.media }),
      ...(bodies.entryId === undefined ? {} : { entryId: bodies.entryId })
    })
    const warmupMs = settings.warmupS * 1000
    const durationMs = settings.durationS * 1000
    // CPU of the target, its Postgres and RabbitMQ, and the WAL written, over the measured window
    // (each sample keeps when it was taken: the end timer can lose the race with the load's end)
    const keepPostgres = postgresOf(target.database)
    const cpuSample = () => {
      const cpu = target.proc.sampler.cpuSeconds()
      return cpu === undefined ? undefined : {
        at: performance.now(),
        cpu,
        postgres: groupCpuSeconds("postgres", keepPostgres),
        rabbitmq: groupCpuSeconds("beam.smp"),
        wal: walBytes()
      }
    }
    type CpuSample = NonNullable<ReturnType<typeof cpuSample>>
    let cpuStart: CpuSample | undefined
    let cpuEnd: CpuSample | undefined
    const cpuTimers = [
      setTimeout(() => (cpuStart = cpuSample()), warmupMs),
      setTimeout(() => (cpuEnd = cpuSample()), warmupMs + durationMs)
    ]
    log(
      `${name}: load ${rate === undefined ? `C=${settings.concurrency}` : `paced ${fmt(rate)} req/s on up to ${settings.connections} connections`} ` +
        `E=${settings.changesPerBody} for ${settings.warmupS} s warm-up + ${settings.durationS} s`
    )
    const loadOptions = { host: "127.0.0.1", port: target.port, path: "/webhook", secret: target.secret, warmupMs, durationMs, factory }
    const rss = rate === undefined ? undefined : sampleRssSeries(target.proc.pid)
    const paced = rate === undefined ? undefined : await runPacedLoad({ ...loadOptions, concurrency: settings.connections, rate })
    const load = paced ?? await runLoad({ ...loadOptions, concurrency: settings.concurrency })
    const rssMb = rss?.stop()
    cpuTimers.forEach(clearTimeout)
    if (cpuStart !== undefined && cpuEnd === undefined) cpuEnd = cpuSample()
    const expected = load.totalOk * factory.eventsPerBody
    log(
      `${name}: load done: ${load.totalRequests} requests, ${load.totalOk} answered 200 (${expected} events to deliver); waiting for deliveries`
    )
    // after an overload the target may still be publishing a backlog it journaled: give it longer
    const wait = await waitForDeliveries(consumers, expected, rate === undefined ? 30_000 : 120_000)
    if (wait.complete && expected > 0) await sleep(1_000) // late duplicates
    const stats = consumers.stats()
    const delivered = stats.unique
    const deliveredInWindow = delivered - stats.uniqueBefore(load.measureStart)
    const windowS = (stats.lastDelivery - load.measureStart) / 1000
    const deliveredRate = stats.lastDelivery > load.measureStart && windowS > 0 ? deliveredInWindow / windowS : undefined

    if (expected === 0) {
      notes.push(`no request was answered 200: nothing to deliver (non-200: ${formatCounts(load.measuredFailures)})`)
    } else if (!wait.complete) {
      notes.push(
        `DELIVERY INCOMPLETE: ${delivered} of ${expected} accepted events reached the queues (${wait.reason}; waited ${(wait.waitedMs / 1000).toFixed(1)} s after the load)`
      )
    } else {
      notes.push(`all ${expected} accepted events delivered; last one ${(stats.lastDelivery - load.measureEnd).toFixed(0)} ms after the load window closed`)
    }
    if (delivered > expected) notes.push(`${delivered - expected} unique deliveries more than the events answered 200 (events of non-200 requests delivered)`)
    if (load.warmupFailures.size > 0) notes.push(`warm-up non-200: ${formatCounts(load.warmupFailures)}`)
    if (stats.duplicates > 0) notes.push(`${stats.duplicates} duplicate deliveries (same messageId)`)
    if (stats.redelivered > 0) notes.push(`${stats.redelivered} deliveries flagged redelivered`)
    if (stats.withoutMessageId > 0) notes.push(`${stats.withoutMessageId} messages without messageId (counted as unique)`)
    if (stats.misrouted > 0) notes.push(`${stats.misrouted} messages whose x-owner-id is not their queue's owner`)
    if (bodies.mediaOwners !== undefined) notes.push(...mediaCheckNotes(stats, bodies))
    const dlq = (await Promise.all(queues.map((q) => queueDepth(consumers.connection, `${q}.dlq`)))).reduce<number>(
      (sum, n) => sum + (n ?? 0),
      0
    )
    if (dlq > 0) notes.push(`${dlq} messages in the bench queues' .dlq`)
    const unroutableAfter = await queueDepth(consumers.connection, "chatico.unroutable")
    if (unroutableAfter !== undefined && unroutableBefore !== undefined && unroutableAfter > unroutableBefore) {
      notes.push(`chatico.unroutable grew by ${unroutableAfter - unroutableBefore} messages during the run`)
    }
    if (paced !== undefined) notes.push(pacedNote(paced))
    const benchCpu = load.benchCpuMicros / 1e6 / settings.durationS
    notes.push(
      `${factory.entriesPerBody} entr${factory.entriesPerBody === 1 ? "y" : "ies"} × ${factory.eventsPerBody} change(s) per body, ` +
        `${fmt(load.measuredRequests / settings.durationS, 0)} req/s answered; ` +
        `bench process CPU ${(benchCpu * 100).toFixed(0)}% of a core`
    )
    const sampledS = cpuStart !== undefined && cpuEnd !== undefined && cpuEnd.at > cpuStart.at ? (cpuEnd.at - cpuStart.at) / 1000 : undefined
    const perWindow = (f: (start: CpuSample, end: CpuSample) => number | undefined) => {
      if (sampledS === undefined || cpuStart === undefined || cpuEnd === undefined) return undefined
      const value = f(cpuStart, cpuEnd)
      return value === undefined ? undefined : value / sampledS
    }
    const cpuPct = perWindow((a, b) => (b.cpu - a.cpu) * 100)
    const [walStart, walEnd] = await Promise.all([cpuStart?.wal, cpuEnd?.wal])
    const walBytesPerS = perWindow(() => walStart === undefined || walEnd === undefined ? undefined : walEnd - walStart)
    return {
      name,
      load,
      eventsPerBody: factory.eventsPerBody,
      durationS: settings.durationS,
      expectedEvents: expected,
      delivered,
      deliveredRate,
      duplicates: stats.duplicates,
      e2e: stats.e2eLatencies(),
      peakRssMb: target.proc.sampler.peakRssBytes() / (1024 * 1024),
      cpuPct,
      postgresCpuPct: perWindow((a, b) => groupCpuDelta(a.postgres, b.postgres) * 100),
      rabbitmqCpuPct: perWindow((a, b) => groupCpuDelta(a.rabbitmq, b.rabbitmq) * 100),
      walBytesPerS,
      notes,
      misrouted: stats.misrouted,
      misroutedByMedia: stats.misroutedByMedia,
      unknownMedia: stats.unknownMedia,
      ...(paced === undefined ? {} : { paced }),
      ...(rssMb === undefined ? {} : { rssMb })
    }
  } finally {
    await consumers.close()
  }
}

const pacedNote = (paced: PacedResult) =>
  `paced ${fmt(paced.rate)} req/s (request i due at the start + i/${fmt(paced.rate)} s) on a pool of up to ${paced.connections} connections: ` +
  `${fmt(paced.sentRate)} req/s sent in the window; of ${paced.due} requests ${paced.waitedForConnection} waited for a free connection ` +
  `and ${paced.late - paced.waitedForConnection} more went out over 1 ms late (timers, the bench's event loop); ` +
  `${paced.unsent} still unsent ${PACED_DRAIN_MS / 1000} s after the window closed`

const mediaCheckNotes = (stats: ConsumerStats, bodies: Bodies) => {
  const notes: Array<string> = []
  if (stats.misroutedByMedia > 0) notes.push(`MISROUTED: ${stats.misroutedByMedia} messages in the queue of another app than their media's owner's`)
  if (stats.unknownMedia > 0) notes.push(`${stats.unknownMedia} messages without a media_id of the bench's (media check impossible)`)
  if (stats.misroutedByMedia === 0 && stats.unknownMedia === 0 && stats.misrouted === 0) {
    notes.push(
      `every delivered message is in its media owner's queue with x-owner-id = that owner` +
        (bodies.entryId === undefined ? " (entry[].id = the owner)" : ` (entry[].id = ${bodies.entryId}, an account without worker app)`)
    )
  }
  return notes
}
