/**
 * `npm run bench`: drives signed Instagram webhooks at the real service (src/main.ts in a child
 * process, its own database and queues) and at a minimal baseline (bench/baseline.ts: verify,
 * parse, publish with confirm, no database), counts what reaches the worker-app queues, and
 * prints one table row per target plus the service/baseline ratio of delivered events/s.
 *
 *   npm run bench -- [--duration 15] [--warmup 2] [--concurrency 32] [--apps 10]
 *                    [--changes-per-body 1] [--baseline-only | --service-only]
 *                    [--tracing] [--compare-tracing [--with-baseline]]
 *                    [--graph-standin] [--compare-owner-resolution [--with-baseline]] [--media-per-app M]
 *
 * The service runs with the Node flags of `npm start` (package.json), plus BENCH_SERVICE_NODE_FLAGS
 * (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 *
 * The same settings can come from BENCH_DURATION, BENCH_WARMUP, BENCH_CONCURRENCY, BENCH_APPS,
 * BENCH_CHANGES_PER_BODY, BENCH_MEDIA_PER_APP (flags win). OWNER_RESOLUTION (default `entry`),
 * QUEUE_TYPE, OTEL_*, GRAPH_* (GRAPH_API_URL, GRAPH_API_CALLS_PER_SECOND, …), INSTAGRAM_ACCESS_TOKEN
 * and RATE_LIMIT_* are passed through to the service.
 *
 * `--tracing` runs the service with trace export on: a minimal OTLP sink in the bench process
 * (bench/run.ts `startOtlpSink`, loopback, free port) receives and discards the exports, and
 * the service gets OTEL_EXPORTER_OTLP_ENDPOINT pointing at it with OTEL_EXPORTER_OTLP_PROTOCOL
 * from the bench's environment (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins; default
 * http/protobuf; `grpc` gets an HTTP/2 sink). The row is labelled `service+tracing` and the
 * notes say how many export requests and bytes the sink received. The sampler is whatever
 * OTEL_TRACES_SAMPLER(_ARG) say in the bench's environment (unset: the service's default,
 * every trace sampled).
 *
 * `--compare-tracing` runs two services side by side, each with its own database and queues: one
 * with tracing off (OTEL_EXPORTER_OTLP_ENDPOINT / _TRACES_ENDPOINT not passed, row `service`) and
 * one as `--tracing` (row `service+tracing`). Each first gets 10 s of unmeasured load; then the load
 * goes to one at a time, in windows (`--warmup` + `--duration`, default 1 + 5 s here) that alternate
 * off, on / on, off / … over `--rounds` rounds (default 10, BENCH_ROUNDS). Both services see the
 * same machine minute by minute, so a drift in what else the machine does shifts both alike;
 * run one after the other, the same untraced service measured anywhere from 1,264 to 2,105
 * events/s within an hour here. It prints each round's throughput cost
 * 1 − delivered ev/s(service+tracing) / delivered ev/s(service) and the service's CPU per
 * delivered event, and their median with PASS / FAIL against a 15 % budget (FAIL, no export
 * reaching the sink, or non-200 answers in any window set exit code 1). Both services run with
 * the per-client webhook rate limit off (RATE_LIMIT_WEBHOOK=0, unless set in the environment):
 * the bench is one client, and the limit would cap the faster one. It runs no baseline unless
 * `--with-baseline` is given.
 *
 * `--graph-standin` runs the service against a Graph API stand-in in the bench process
 * (`startGraphStandIn`: node:http, loopback, free port) that answers
 * `GET /v25.0/{media-id}` with `{"owner":{"id":…},"username":"u"}`, the owner being the worker
 * app the bench made the media for (`--media-per-app` media per app, default 10). Every body's
 * `entry[].id` is then one shared account that no worker app serves, so an event reaches its
 * app only if its owner came from the Graph API; the consumers check each message's `media_id`
 * against the queue's owner (and `x-owner-id`, as always). The service gets
 * GRAPH_API_URL=http://127.0.0.1:<port>/v25.0 and an INSTAGRAM_ACCESS_TOKEN of the bench's (the
 * stand-in checks it and its appsecret_proof); OWNER_RESOLUTION defaults to `graph` (`auto`
 * works too, `entry` is refused). The notes count the stand-in's calls: with the owner cache,
 * one per distinct media. GRAPH_API_CALLS_PER_SECOND, when not set in the environment, is raised
 * above the service's default (10/s) only if the token bucket could not resolve every media
 * within half the warm-up (at most 1.5 s: routing waits 3 s for a lookup, then the event stays
 * pending until DELIVERY_LEASE); the settings line says so. The baseline (no owner lookups)
 * gets the same media with `entry[].id` = the owner.
 *
 * `--compare-owner-resolution` runs two services side by side with the same settings and media,
 * in windows and rounds as `--compare-tracing`: `service[entry]` (OWNER_RESOLUTION=entry,
 * `entry[].id` = the owner, no stand-in) and `service[graph]` (OWNER_RESOLUTION=graph with
 * `--graph-standin`; its unmeasured first load fills the owner cache). It prints the stand-in's
 * calls and each round's throughput difference 1 − delivered ev/s(graph) / delivered ev/s(entry),
 * and their median with PASS / FAIL against a 10 % budget (issue 4). Both run with
 * RATE_LIMIT_WEBHOOK=0 unless set. NOT COMPARABLE (exit code 1, as FAIL) when any measured window
 * has non-200 answers, missing or misrouted events, or the stand-in was never asked. No baseline
 * unless `--with-baseline`.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { createHmac, randomBytes, randomInt } from "node:crypto"
import { createWriteStream, readFileSync } from "node:fs"
import http from "node:http"
import http2 from "node:http2"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { gunzipSync } from "node:zlib"
import amqp from "amqplib"
import {
  type Consumers,
  type ConsumerStats,
  declareAppQueue,
  deleteQueues,
  fmt,
  formatCounts,
  groupCpuDelta,
  groupCpuSeconds,
  type LoadResult,
  makeBodyFactory,
  mediaIdsFor,
  percentiles,
  type ProcSampler,
  type QueueType,
  queueDepth,
  renderTable,
  runLoad,
  sampleProcess,
  startConsumers
} from "./load.ts"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
/** BENCH_SERVICE_ROOT: another checkout (e.g. an earlier commit) whose service to run, for a before/after figure. */
const SERVICE_ROOT = process.env.BENCH_SERVICE_ROOT ?? ROOT
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const log = (line: string) => console.log(`[bench] ${line}`)

// ---------------------------------------------------------------------------------------------
// Settings

interface Settings {
  readonly durationS: number
  readonly warmupS: number
  readonly concurrency: number
  readonly apps: number
  readonly changesPerBody: number
  readonly runService: boolean
  readonly runBaseline: boolean
  /** Service phases to run, in order. */
  readonly servicePhases: ReadonlyArray<ServicePhase>
  readonly compareTracing: boolean
  /** Rounds of a side-by-side comparison: each measures both services once (ABBA order across rounds). */
  readonly rounds: number
  readonly compareOwnerResolution: boolean
  /** OTLP protocol of the sink and the service's exporter (when a phase traces). */
  readonly otlpProtocol: OtlpProtocol
  /** OWNER_RESOLUTION of the service outside --compare-owner-resolution. */
  readonly ownerResolution: string
  /**
   * --graph-standin or --compare-owner-resolution: bodies use `mediaPerApp` media per app (a
   * cursor per app), the consumers check each message's media against its queue's owner, and
   * service rows are labelled with their owner mode.
   */
  readonly ownerAware: boolean
  /** Distinct media per worker app in the bodies. */
  readonly mediaPerApp: number
  /** The service's Graph API token bucket in phases with the stand-in (undefined: no such phase). */
  readonly graphLimits: GraphLimits | undefined
  readonly queueType: QueueType
  readonly rabbitmqUrl: string
}

/** One run of the service. */
interface ServicePhase {
  /** Traces exported to the bench's OTLP sink. */
  readonly tracing: boolean
  /** OWNER_RESOLUTION of the service. */
  readonly ownerResolution: string
  /** A Graph API stand-in answers the owner lookups; every entry[].id is an account without a worker app. */
  readonly graphStandIn: boolean
  /** Which round of a multi-round comparison (1-based). */
  readonly round: number
}

interface GraphLimits {
  readonly callsPerSecond: number
  readonly burst: number
  /** GRAPH_API_CALLS_PER_SECOND was not set and the default was too slow: the bench passes `callsPerSecond`. */
  readonly setByBench: boolean
  /** Seconds the token bucket needs to resolve every media of a cold cache. */
  readonly fillS: number
  /** The longest fill the bench accepts before raising the rate. */
  readonly budgetS: number
}

/**
 * The token bucket of the phases with the stand-in. A cold cache asks once per distinct media;
 * that must be over within the warm-up, and well within the 3 s routing waits for a lookup
 * (beyond it the event stays pending until DELIVERY_LEASE and lands late in the measured window).
 */
const planGraphLimits = (distinctMedia: number, warmupS: number): GraphLimits => {
  const budgetS = Math.max(0.25, Math.min(warmupS, OWNER_LOOKUP_WAIT_S) / 2)
  const rawBurst = Number(process.env.GRAPH_API_BURST)
  const burst = process.env.GRAPH_API_BURST && Number.isFinite(rawBurst) ? rawBurst : GRAPH_DEFAULT_BURST
  const toAsk = Math.max(0, distinctMedia - burst)
  const rawRate = Number(process.env.GRAPH_API_CALLS_PER_SECOND)
  if (process.env.GRAPH_API_CALLS_PER_SECOND && Number.isFinite(rawRate) && rawRate > 0) {
    return { callsPerSecond: rawRate, burst, setByBench: false, fillS: toAsk / rawRate, budgetS }
  }
  const needed = toAsk / budgetS
  if (needed <= GRAPH_DEFAULT_CALLS_PER_SECOND) {
    return { callsPerSecond: GRAPH_DEFAULT_CALLS_PER_SECOND, burst, setByBench: false, fillS: toAsk / GRAPH_DEFAULT_CALLS_PER_SECOND, budgetS }
  }
  const callsPerSecond = Math.ceil(needed / 10) * 10
  return { callsPerSecond, burst, setByBench: true, fillS: toAsk / callsPerSecond, budgetS }
}

const describeGraphLimits = (limits: GraphLimits, distinctMedia: number) =>
  `GRAPH_API_CALLS_PER_SECOND=${limits.callsPerSecond}` +
  (limits.setByBench
    ? ` (set by the bench: the default ${GRAPH_DEFAULT_CALLS_PER_SECOND}/s would need ${((distinctMedia - limits.burst) / GRAPH_DEFAULT_CALLS_PER_SECOND).toFixed(1)} s for ${distinctMedia} media; ` +
      `allowed ${limits.budgetS.toFixed(2)} s)`
    : process.env.GRAPH_API_CALLS_PER_SECOND
    ? " (from the environment)"
    : " (the service's default)") +
  ` burst=${limits.burst}: a cold cache fills in ~${limits.fillS.toFixed(2)} s`

const phaseName = (settings: Settings, phase: ServicePhase) =>
  `service${settings.ownerAware ? `[${phase.ownerResolution}]` : ""}${phase.tracing ? "+tracing" : ""}${settings.rounds > 1 ? ` #${phase.round}` : ""}`

type OtlpProtocol = "http/protobuf" | "http/json" | "grpc"

/** Largest throughput cost of tracing that --compare-tracing accepts (issue 5). */
const TRACING_BUDGET = 0.15
/**
 * Rounds of --compare-tracing / --compare-owner-resolution unless --rounds says otherwise: here
 * one pair of windows with the same code in both services differed by up to ±15 %; the median
 * of ten is steadier.
 */
const DEFAULT_COMPARISON_ROUNDS = 10
/** A comparison's window (warm-up + measured) unless --warmup / --duration say otherwise. */
const DEFAULT_WINDOW_WARMUP_S = 1
const DEFAULT_WINDOW_DURATION_S = 5
/** Seconds of unmeasured load each service of a comparison gets before the first window. */
const SETTLE_S = 10
/** Largest throughput cost of OWNER_RESOLUTION=graph (cache warm) over entry that --compare-owner-resolution accepts (issue 4). */
const OWNER_RESOLUTION_BUDGET = 0.1
/** Media per app with --graph-standin / --compare-owner-resolution unless --media-per-app says otherwise. */
const DEFAULT_MEDIA_PER_APP = 10
/** Media per owner of the plain bodies (bench/load.ts makeBodyFactory's default). */
const PLAIN_MEDIA_PER_OWNER = 16
/** The service's Graph API token bucket defaults (docs/owner-resolution.md). */
const GRAPH_DEFAULT_CALLS_PER_SECOND = 10
const GRAPH_DEFAULT_BURST = 10
/** A Graph API lookup slower than this used to leave its event pending until DELIVERY_LEASE (before per-key lanes). */
const OWNER_LOOKUP_WAIT_S = 3

const usage = `usage: node bench/run.ts [--duration S] [--warmup S] [--concurrency C] [--apps N] [--changes-per-body E] [--baseline-only | --service-only]
                         [--tracing] [--compare-tracing [--rounds N] [--with-baseline]]
                         [--graph-standin] [--compare-owner-resolution [--rounds N] [--with-baseline]] [--media-per-app M]
  --tracing          the service exports traces (OTLP, protocol from OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf)
                     to a sink in the bench process; its row is "service+tracing", the notes count the exports received
  --compare-tracing  two services side by side, tracing off ("service") and on ("service+tracing"); the load alternates
                     between them in windows (default ${DEFAULT_WINDOW_WARMUP_S} + ${DEFAULT_WINDOW_DURATION_S} s) over --rounds rounds (default ${DEFAULT_COMPARISON_ROUNDS}; off, on / on, off / …),
                     the throughput cost 1 - delivered(tracing)/delivered(plain) of each round, and their median with
                     PASS/FAIL against ${TRACING_BUDGET * 100} % (exit code 1 on FAIL); webhook rate limit off in both unless
                     RATE_LIMIT_WEBHOOK is set; no baseline unless --with-baseline
  --graph-standin    the service resolves owners through a Graph API stand-in in the bench process (GRAPH_API_URL and
                     INSTAGRAM_ACCESS_TOKEN set by the bench; OWNER_RESOLUTION graph unless set to auto): every entry[].id is an
                     account without worker app, so only the media owner routes right; the notes count the stand-in's calls
  --compare-owner-resolution
                     two services side by side, windows and rounds as --compare-tracing: OWNER_RESOLUTION=entry
                     ("service[entry]") and graph with --graph-standin ("service[graph]"); the median of the rounds' costs
                     1 - delivered(graph)/delivered(entry) with PASS/FAIL against ${OWNER_RESOLUTION_BUDGET * 100} % (exit code 1 on FAIL or
                     NOT COMPARABLE: non-200s, missing or misrouted events); webhook rate limit off in both unless
                     RATE_LIMIT_WEBHOOK is set; no baseline unless --with-baseline
  --media-per-app M  distinct media per worker app in the bodies (default ${DEFAULT_MEDIA_PER_APP} with the two flags above, else ${PLAIN_MEDIA_PER_OWNER});
                     GRAPH_API_CALLS_PER_SECOND is raised (and said so) only if the default token bucket
                     (${GRAPH_DEFAULT_CALLS_PER_SECOND}/s, burst ${GRAPH_DEFAULT_BURST}) could not resolve apps × M media within half the warm-up (≤ 1.5 s)
  --with-baseline    run the baseline too (what happens anyway without --compare-tracing / --compare-owner-resolution)`

const parseSettings = (argv: ReadonlyArray<string>): Settings => {
  const flags = new Map<string, string>()
  const booleans = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--help" || arg === "-h") {
      console.log(usage)
      process.exit(0)
    }
    if (
      arg === "--baseline-only" ||
      arg === "--service-only" ||
      arg === "--tracing" ||
      arg === "--compare-tracing" ||
      arg === "--with-baseline" ||
      arg === "--graph-standin" ||
      arg === "--compare-owner-resolution"
    ) {
      booleans.add(arg.slice(2))
      continue
    }
    const match = /^--(duration|warmup|concurrency|apps|changes-per-body|media-per-app|rounds)(?:=(.*))?$/.exec(arg)
    if (!match) {
      console.error(`unknown argument ${arg}\n${usage}`)
      process.exit(2)
    }
    const value = match[2] ?? argv[++i]
    if (value === undefined) {
      console.error(`${arg} needs a value\n${usage}`)
      process.exit(2)
    }
    flags.set(match[1]!, value)
  }
  const num = (flag: string, envName: string, fallback: number, integer: boolean, min: number) => {
    const raw = flags.get(flag) ?? process.env[envName]
    if (raw === undefined || raw === "") return fallback
    const value = Number(raw)
    if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
      console.error(`--${flag} (${envName}) must be ${integer ? "an integer" : "a number"} ≥ ${min}, got ${raw}`)
      process.exit(2)
    }
    return value
  }
  const exclusive = (a: string, b: string) => {
    if (booleans.has(a) && booleans.has(b)) {
      console.error(`--${a} and --${b} exclude each other\n${usage}`)
      process.exit(2)
    }
  }
  exclusive("baseline-only", "service-only")
  exclusive("baseline-only", "tracing")
  exclusive("baseline-only", "compare-tracing")
  exclusive("service-only", "with-baseline")
  exclusive("baseline-only", "graph-standin")
  exclusive("baseline-only", "compare-owner-resolution")
  exclusive("compare-tracing", "compare-owner-resolution")
  const compareTracing = booleans.has("compare-tracing")
  const compareOwnerResolution = booleans.has("compare-owner-resolution")
  const graphStandIn = booleans.has("graph-standin")
  const ownerAware = graphStandIn || compareOwnerResolution
  const envOwnerResolution = process.env.OWNER_RESOLUTION || undefined
  if (graphStandIn && !compareOwnerResolution && envOwnerResolution === "entry") {
    console.error(`--graph-standin needs OWNER_RESOLUTION graph or auto (entry never asks the Graph API)\n${usage}`)
    process.exit(2)
  }
  const ownerResolution = envOwnerResolution ?? (graphStandIn ? "graph" : "entry")
  const rawProtocol = process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || process.env.OTEL_EXPORTER_OTLP_PROTOCOL || "http/protobuf"
  const tracingWanted = compareTracing || booleans.has("tracing")
  if (tracingWanted && rawProtocol !== "http/protobuf" && rawProtocol !== "http/json" && rawProtocol !== "grpc") {
    console.error(`OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL must be http/protobuf, http/json or grpc, got ${rawProtocol}`)
    process.exit(2)
  }
  const queueType = process.env.QUEUE_TYPE === "classic" ? "classic" : "quorum"
  const runService = !booleans.has("baseline-only")
  const sideBySide = compareTracing || compareOwnerResolution
  const warmupS = num("warmup", "BENCH_WARMUP", sideBySide ? DEFAULT_WINDOW_WARMUP_S : 2, false, 0)
  const apps = num("apps", "BENCH_APPS", 10, true, 1)
  const mediaPerApp = num("media-per-app", "BENCH_MEDIA_PER_APP", ownerAware ? DEFAULT_MEDIA_PER_APP : PLAIN_MEDIA_PER_OWNER, true, 1)
  if (flags.has("rounds") && !sideBySide) {
    console.error(`--rounds goes with --compare-tracing or --compare-owner-resolution\n${usage}`)
    process.exit(2)
  }
  const rounds = sideBySide ? num("rounds", "BENCH_ROUNDS", DEFAULT_COMPARISON_ROUNDS, true, 1) : 1
  // Alternate which side goes first (ABBA), so a machine that slows down or speeds up over the
  // run does not favour one of them.
  const tracingOrder = (round: number) => (round % 2 === 1 ? [false, true] : [true, false])
  const servicePhases: ReadonlyArray<ServicePhase> = compareOwnerResolution
    ? Array.from({ length: rounds }, (_, i) =>
      tracingOrder(i + 1).map((graph) => ({
        tracing: booleans.has("tracing"),
        ownerResolution: graph ? "graph" : "entry",
        graphStandIn: graph,
        round: i + 1
      }))).flat()
    : compareTracing
    ? Array.from({ length: rounds }, (_, i) => tracingOrder(i + 1).map((tracing) => ({ tracing, ownerResolution, graphStandIn, round: i + 1 })))
      .flat()
    : runService
    ? [{ tracing: booleans.has("tracing"), ownerResolution, graphStandIn, round: 1 }]
    : []
  return {
    durationS: num("duration", "BENCH_DURATION", sideBySide ? DEFAULT_WINDOW_DURATION_S : 15, false, 0.5),
    warmupS,
    concurrency: num("concurrency", "BENCH_CONCURRENCY", 32, true, 1),
    apps,
    changesPerBody: num("changes-per-body", "BENCH_CHANGES_PER_BODY", 1, true, 1),
    runService,
    runBaseline: compareTracing || compareOwnerResolution ? booleans.has("with-baseline") : !booleans.has("service-only"),
    servicePhases,
    compareTracing,
    rounds,
    compareOwnerResolution,
    otlpProtocol: rawProtocol as OtlpProtocol, // checked above when a phase traces
    ownerResolution,
    ownerAware,
    mediaPerApp,
    graphLimits: servicePhases.some((phase) => phase.graphStandIn) ? planGraphLimits(apps * mediaPerApp, warmupS) : undefined,
    queueType,
    rabbitmqUrl: process.env.RABBITMQ_URL || "amqp://guest:guest@127.0.0.1:5672"
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

interface Child {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  readonly logFile: string
  readonly tail: () => string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly isRunning: () => boolean
  readonly sampler: ProcSampler
}

/**
 * The Node flags `npm start` gives the service (package.json `scripts.start` is
 * `exec node [flags] src/main.ts`), so the bench runs it as it is run in production.
 */
const startScriptFlags = (): Array<string> => {
  const start = (JSON.parse(readFileSync(join(SERVICE_ROOT, "package.json"), "utf8")) as { scripts?: { start?: string } }).scripts?.start ?? ""
  const words = start.trim().split(/\s+/).filter((word, i) => !(i === 0 && word === "exec"))
  if (words[0] !== "node" || words[words.length - 1] !== "src/main.ts") {
    throw new Error(`package.json scripts.start is not "exec node [flags] src/main.ts": ${start}`)
  }
  return words.slice(1, -1)
}

/**
 * Node flags for the service child (not the baseline): those of `npm start`, then
 * BENCH_SERVICE_NODE_FLAGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it
 * (NODE_OPTIONS refuses --cpu-prof).
 */
const nodeFlags = (name: string): Array<string> =>
  name.startsWith("service")
    ? [...startScriptFlags(), ...(process.env.BENCH_SERVICE_NODE_FLAGS ?? "").split(/\s+/).filter((flag) => flag !== "")]
    : []

const startChild = (name: string, script: string, env: Record<string, string>, runId: string): Child => {
  const logFile = join(tmpdir(), `chatico-bench-${runId}-${name}.log`)
  const out = createWriteStream(logFile)
  const cwd = name.startsWith("service") ? SERVICE_ROOT : ROOT
  const child = spawn(process.execPath, [...nodeFlags(name), script], { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<string> = []
  const keep = (chunk: Buffer) => {
    out.write(chunk)
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue
      lines.push(line.length > 400 ? line.slice(0, 400) + "…" : line)
      if (lines.length > 30) lines.shift()
    }
  }
  child.stdout!.on("data", keep)
  child.stderr!.on("data", keep)
  let running = true
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running = false
      resolve({ code, signal })
    })
  )
  child.once("close", () => out.end())
  if (child.pid === undefined) throw new Error(`could not start ${name}`)
  return {
    name,
    child,
    pid: child.pid,
    logFile,
    tail: () => lines.join("\n"),
    exited,
    isRunning: () => running,
    sampler: sampleProcess(child.pid)
  }
}

/** SIGTERM, then wait (SIGKILL after timeoutMs). Returns how long the exit took. */
const stopChild = async (proc: Child, timeoutMs = 30_000) => {
  if (!proc.isRunning()) {
    const { code, signal } = await proc.exited
    return { ms: 0, code, signal, killed: false, alreadyExited: true }
  }
  const t0 = performance.now()
  proc.child.kill("SIGTERM")
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    proc.child.kill("SIGKILL")
  }, timeoutMs)
  const { code, signal } = await proc.exited
  clearTimeout(timer)
  proc.sampler.stop()
  return { ms: performance.now() - t0, code, signal, killed, alreadyExited: false }
}

const waitHttp200 = async (proc: Child, url: string, timeoutMs: number) => {
  const t0 = performance.now()
  let last = "no answer"
  while (performance.now() - t0 < timeoutMs) {
    if (!proc.isRunning()) {
      const { code, signal } = await proc.exited
      throw new Error(`${proc.name} exited (code ${code}, signal ${signal}) before ${url} answered 200`)
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) })
      const text = await response.text()
      if (response.status === 200) return performance.now() - t0
      last = `${response.status} ${text.slice(0, 300)}`
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    await sleep(200)
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs / 1000} s (last: ${last})`)
}

const psql = async (sql: string) => {
  await promisify(execFile)("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql], {
    timeout: 30_000
  })
}

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

// ---------------------------------------------------------------------------------------------
// OTLP sink: receives the service's trace exports and discards them

interface SinkExport {
  /** performance.now() when the request body had been read. */
  readonly at: number
  /** Bytes on the wire (the body as sent, compressed or not). */
  readonly bytes: number
  /** Spans in the export, undefined when the body could not be read. */
  readonly spans: number | undefined
}

/** Reads a protobuf varint at pos: [value, next position]. */
const readVarint = (buf: Buffer, pos: number): [number, number] => {
  let value = 0
  let scale = 1
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated varint")
    const byte = buf[pos++]!
    value += (byte & 0x7f) * scale
    if (byte < 0x80) return [value, pos]
    scale *= 128
  }
}

/** Calls each(start, end) for every length-delimited occurrence of field in buf[start, end). */
const eachField = (buf: Buffer, start: number, end: number, field: number, each: (start: number, end: number) => void) => {
  let pos = start
  while (pos < end) {
    const [key, afterKey] = readVarint(buf, pos)
    pos = afterKey
    const wireType = key & 7
    if (wireType === 0) pos = readVarint(buf, pos)[1]
    else if (wireType === 1) pos += 8
    else if (wireType === 5) pos += 4
    else if (wireType === 2) {
      const [length, afterLength] = readVarint(buf, pos)
      if (Math.floor(key / 8) === field) each(afterLength, afterLength + length)
      pos = afterLength + length
    } else throw new Error(`unexpected wire type ${wireType}`)
  }
  if (pos !== end) throw new Error("field overruns its message")
}

/** Spans in an ExportTraceServiceRequest: resource_spans (1) → scope_spans (2) → spans (2). */
const countProtobufSpans = (buf: Buffer, start = 0, end = buf.length) => {
  let spans = 0
  eachField(buf, start, end, 1, (rs, re) => eachField(buf, rs, re, 2, (ss, se) => eachField(buf, ss, se, 2, () => spans++)))
  return spans
}

const START_TIME = Buffer.from(`"startTimeUnixNano"`)

/** Spans in one export body (best effort: undefined when it cannot be decoded). */
const countSpans = (protocol: OtlpProtocol, body: Buffer, contentType: string | undefined, encoding: string | undefined) => {
  try {
    if (protocol === "grpc") {
      // length-prefixed messages: 1 byte compressed flag, 4 bytes length
      let spans = 0
      for (let pos = 0; pos + 5 <= body.length; ) {
        const length = body.readUInt32BE(pos + 1)
        if (body[pos] !== 0) return undefined // compressed message
        spans += countProtobufSpans(body, pos + 5, pos + 5 + length)
        pos += 5 + length
      }
      return spans
    }
    const plain = encoding === "gzip" ? gunzipSync(body) : encoding === undefined || encoding === "identity" ? body : undefined
    if (plain === undefined) return undefined
    if (contentType?.includes("json")) {
      // only spans carry startTimeUnixNano (events and links do not)
      let spans = 0
      for (let at = plain.indexOf(START_TIME); at >= 0; at = plain.indexOf(START_TIME, at + START_TIME.length)) spans++
      return spans
    }
    return countProtobufSpans(plain)
  } catch {
    return undefined
  }
}

interface OtlpSink {
  readonly protocol: OtlpProtocol
  readonly port: number
  readonly endpoint: string
  /** Accepted export requests (POST /v1/traces, or the gRPC TraceService/Export method). */
  readonly exports: () => ReadonlyArray<SinkExport>
  /** Requests to any other path or method (answered 404 / UNIMPLEMENTED). */
  readonly rejected: () => number
  readonly contentTypes: () => ReadonlyMap<string, number>
  readonly close: () => Promise<void>
}

const GRPC_EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

/**
 * A minimal OTLP trace receiver on a free loopback port: node:http for http/protobuf and
 * http/json (empty ExportTraceServiceResponse: an empty protobuf body or `{}`), node:http2
 * (cleartext) for grpc (one empty length-prefixed message, grpc-status 0). It reads each
 * body, counts it and throws it away.
 */
const startOtlpSink = async (protocol: OtlpProtocol): Promise<OtlpSink> => {
  const exports: Array<SinkExport> = []
  const contentTypes = new Map<string, number>()
  let rejected = 0
  const count = (contentType: string | undefined, body: Buffer, encoding: string | undefined) => {
    const at = performance.now()
    exports.push({ at, bytes: body.length, spans: countSpans(protocol, body, contentType, encoding) })
    const key = contentType ?? "(none)"
    contentTypes.set(key, (contentTypes.get(key) ?? 0) + 1)
  }
  const port = await freePort()
  let close: () => Promise<void>
  if (protocol === "grpc") {
    const server = http2.createServer()
    const sessions = new Set<http2.ServerHttp2Session>()
    server.on("session", (session) => {
      sessions.add(session)
      session.once("close", () => sessions.delete(session))
    })
    server.on("stream", (stream, headers) => {
      const chunks: Array<Buffer> = []
      stream.on("error", () => {})
      stream.on("data", (chunk: Buffer) => chunks.push(chunk))
      stream.on("end", () => {
        if (headers[":method"] !== "POST" || headers[":path"] !== GRPC_EXPORT_PATH) {
          rejected++
          stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12" }, { endStream: true })
          return
        }
        count(headers["content-type"], Buffer.concat(chunks), undefined)
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
        stream.end(Buffer.alloc(5)) // uncompressed, zero-length ExportTraceServiceResponse
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", () => resolve())
    })
    close = () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const session of sessions) session.destroy()
      })
  } else {
    const server = http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("error", () => {})
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        if (req.method !== "POST" || (req.url ?? "").split("?")[0] !== "/v1/traces") {
          rejected++
          res.writeHead(404, { "content-length": 0 }).end()
          return
        }
        const contentType = req.headers["content-type"]
        count(contentType, Buffer.concat(chunks), req.headers["content-encoding"])
        if (contentType?.includes("json")) res.writeHead(200, { "content-type": "application/json", "content-length": 2 }).end("{}")
        else res.writeHead(200, { "content-type": "application/x-protobuf", "content-length": 0 }).end()
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", () => resolve())
    })
    close = () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
  return {
    protocol,
    port,
    endpoint: `http://127.0.0.1:${port}`,
    exports: () => exports,
    rejected: () => rejected,
    contentTypes: () => contentTypes,
    close
  }
}

const formatBytes = (bytes: number) =>
  bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(2)} MiB` : bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`

/** What the sink received, overall and in the measured windows. */
const sinkNotes = (sink: OtlpSink, windows: ReadonlyArray<LoadResult>, acceptedEvents: number, stoppedAt: number | undefined) => {
  const all = sink.exports()
  const total = all.reduce((sum, e) => sum + e.bytes, 0)
  const inWindow = all.filter((e) => windows.some((load) => e.at >= load.measureStart && e.at < load.measureEnd))
  const windowBytes = inWindow.reduce((sum, e) => sum + e.bytes, 0)
  const windowS = windows.reduce((sum, load) => sum + (load.measureEnd - load.measureStart) / 1000, 0)
  const afterStop = stoppedAt === undefined ? [] : all.filter((e) => e.at >= stoppedAt)
  const spans = all.every((e) => e.spans !== undefined) ? all.reduce((sum, e) => sum + e.spans!, 0) : undefined
  const types = [...sink.contentTypes()].map(([type, n]) => `${type} ×${n}`).join(", ")
  const notes = [
    `OTLP sink (${sink.protocol}, ${sink.endpoint}) received ${all.length} export requests, ${formatBytes(total)}, ` +
      `${spans === undefined ? "span count n/a" : `${spans} spans`} ` +
      `(${inWindow.length} requests, ${formatBytes(windowBytes)} = ${formatBytes(windowBytes / windowS)}/s in the measured window${windows.length > 1 ? "s" : ""}; ` +
      `${afterStop.length} after SIGTERM)` +
      (acceptedEvents > 0
        ? `, ${fmt(total / acceptedEvents, 0)} B${spans === undefined ? "" : ` and ${(spans / acceptedEvents).toFixed(2)} spans`} per accepted event`
        : "") +
      (types ? `; content-type ${types}` : "") +
      (sink.rejected() > 0 ? `; ${sink.rejected()} requests to other paths rejected` : "")
  ]
  if (all.length === 0) notes.push(`NO TRACE EXPORT reached the sink: this run did not measure tracing`)
  return notes
}

// ---------------------------------------------------------------------------------------------
// Graph API stand-in: answers the service's owner lookups from the bench's media → owner map

interface GraphStandIn {
  /** The GRAPH_API_URL to give the service. */
  readonly url: string
  /** performance.now() of each `GET /v25.0/{media-id}`, with its media id. */
  readonly calls: () => ReadonlyArray<{ readonly at: number; readonly mediaId: string }>
  /** Calls with a wrong access_token or appsecret_proof (answered code 190). */
  readonly badAuth: () => number
  /** Calls for a media the bench did not make (answered code 100). */
  readonly unknownMedia: () => number
  /** Requests to any other path or method (answered 404). */
  readonly rejected: () => number
  readonly close: () => Promise<void>
}

const GRAPH_VERSION = "v25.0"

/**
 * `GET /v25.0/{media-id}?fields=owner,username&access_token=…&appsecret_proof=…` on a free
 * loopback port, answered `{"owner":{"id":"<owner>"},"username":"u"}` from `owners`; a wrong
 * token or proof gets Meta's code 190, an unknown media code 100. Every call is counted.
 */
const startGraphStandIn = async (owners: ReadonlyMap<string, string>, token: string, appSecret: string): Promise<GraphStandIn> => {
  const proof = createHmac("sha256", appSecret).update(token).digest("hex")
  const calls: Array<{ at: number; mediaId: string }> = []
  let badAuth = 0
  let unknownMedia = 0
  let rejected = 0
  const answer = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body)
    res.writeHead(status, { "content-type": "application/json; charset=UTF-8", "content-length": Buffer.byteLength(text) }).end(text)
  }
  const path = new RegExp(`^/${GRAPH_VERSION.replace(".", "\\.")}/([0-9]+)$`)
  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    req.resume()
    const url = new URL(req.url ?? "/", "http://stand-in")
    const match = path.exec(url.pathname)
    if (req.method !== "GET" || match === null) {
      rejected++
      return answer(res, 404, { error: { message: "Unknown path components", type: "OAuthException", code: 2500 } })
    }
    const mediaId = match[1]!
    calls.push({ at: performance.now(), mediaId })
    if (url.searchParams.get("access_token") !== token || url.searchParams.get("appsecret_proof") !== proof) {
      badAuth++
      return answer(res, 400, { error: { message: "Invalid OAuth access token.", type: "OAuthException", code: 190 } })
    }
    const owner = owners.get(mediaId)
    if (owner === undefined) {
      unknownMedia++
      return answer(res, 400, { error: { message: "Unsupported get request.", type: "GraphMethodException", code: 100 } })
    }
    answer(res, 200, { owner: { id: owner }, username: "u" })
  })
  const port = await freePort()
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => resolve())
  })
  return {
    url: `http://127.0.0.1:${port}/${GRAPH_VERSION}`,
    calls: () => calls,
    badAuth: () => badAuth,
    unknownMedia: () => unknownMedia,
    rejected: () => rejected,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}

interface GraphFigures {
  readonly calls: number
  /** Distinct media asked about. */
  readonly mediaAsked: number
  /** Distinct media in the bodies. */
  readonly mediaInBodies: number
  readonly inWarmup: number
  readonly inWindow: number
  readonly afterWindow: number
  readonly badAuth: number
  readonly unknownMedia: number
}

const graphFigures = (standIn: GraphStandIn, load: LoadResult, mediaInBodies: number): GraphFigures => {
  const calls = standIn.calls()
  return {
    calls: calls.length,
    mediaAsked: new Set(calls.map((c) => c.mediaId)).size,
    mediaInBodies,
    inWarmup: calls.filter((c) => c.at < load.measureStart).length,
    inWindow: calls.filter((c) => c.at >= load.measureStart && c.at < load.measureEnd).length,
    afterWindow: calls.filter((c) => c.at >= load.measureEnd).length,
    badAuth: standIn.badAuth(),
    unknownMedia: standIn.unknownMedia()
  }
}

const graphNotes = (standIn: GraphStandIn, figures: GraphFigures, load: LoadResult) => {
  const calls = standIn.calls()
  const last = calls.length === 0 ? undefined : calls[calls.length - 1]!.at
  const notes = [
    `Graph API stand-in (${standIn.url}): ${figures.calls} calls for ${figures.mediaAsked} distinct media of the ${figures.mediaInBodies} in the bodies ` +
      `(${figures.calls - figures.mediaAsked} repeated); ${figures.inWarmup} in the warm-up, ${figures.inWindow} in the measured window, ` +
      `${figures.afterWindow} after it` +
      (last === undefined ? "" : `; last call ${((last - load.loadStart) / 1000).toFixed(2)} s after the load started`) +
      (figures.badAuth === 0 ? "; access_token and appsecret_proof right on every call" : "") +
      (standIn.rejected() > 0 ? `; ${standIn.rejected()} requests to other paths rejected` : "")
  ]
  if (figures.badAuth > 0) notes.push(`${figures.badAuth} Graph API calls with a wrong access_token or appsecret_proof (answered code 190)`)
  if (figures.unknownMedia > 0) notes.push(`${figures.unknownMedia} Graph API calls for media the bench did not make (answered code 100)`)
  if (figures.calls === 0) notes.push(`the Graph API stand-in was NEVER ASKED: this run did not measure owner resolution through Meta`)
  return notes
}

// ---------------------------------------------------------------------------------------------
// Cleanup: a stack per run; SIGINT runs it too

const cleanups: Array<{ readonly what: string; readonly run: () => Promise<unknown> }> = []
const onCleanup = (what: string, run: () => Promise<unknown>) => cleanups.push({ what, run })
const runCleanups = async () => {
  while (cleanups.length > 0) {
    const step = cleanups.pop()!
    try {
      await step.run()
    } catch (err) {
      log(`cleanup: ${step.what} failed: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
}
let interrupted = false
process.on("SIGINT", () => {
  if (interrupted) process.exit(130)
  interrupted = true
  log("interrupted: cleaning up (Ctrl-C again to quit at once)")
  runCleanups().finally(() => process.exit(130))
})

// ---------------------------------------------------------------------------------------------
// One measured phase: load → wait for deliveries → figures

interface PhaseResult {
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
}

/** What the bodies carry. */
interface Workload {
  /** owner_id of each worker app. */
  readonly owners: ReadonlyArray<string>
  /** An account no worker app serves: every entry[].id in the phases with the stand-in. */
  readonly account: string
  /** The media of each owner (--graph-standin, --compare-owner-resolution), undefined otherwise. */
  readonly media: ReadonlyArray<ReadonlyArray<string>> | undefined
  /** media id → owner, for the stand-in and the consumers' check. */
  readonly mediaOwners: ReadonlyMap<string, string> | undefined
}

/** How one phase's bodies are made and checked. */
interface Bodies {
  readonly media?: ReadonlyArray<ReadonlyArray<string>>
  readonly entryId?: string
  readonly mediaOwners?: ReadonlyMap<string, string>
}

const bodiesFor = (workload: Workload, graphStandIn: boolean): Bodies => ({
  ...(workload.media === undefined ? {} : { media: workload.media }),
  ...(workload.mediaOwners === undefined ? {} : { mediaOwners: workload.mediaOwners }),
  ...(graphStandIn ? { entryId: workload.account } : {})
})

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

const measurePhase = async (
  name: string,
  settings: Settings,
  target: { readonly port: number; readonly secret: string; readonly proc: Child; readonly database?: string },
  owners: ReadonlyArray<string>,
  queues: ReadonlyArray<string>,
  idPrefix: string,
  bodies: Bodies = {}
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
    log(`${name}: load C=${settings.concurrency} E=${settings.changesPerBody} for ${settings.warmupS} s warm-up + ${settings.durationS} s`)
    const load = await runLoad({
      host: "127.0.0.1",
      port: target.port,
      path: "/webhook",
      secret: target.secret,
      concurrency: settings.concurrency,
      warmupMs,
      durationMs,
      factory
    })
    cpuTimers.forEach(clearTimeout)
    if (cpuStart !== undefined && cpuEnd === undefined) cpuEnd = cpuSample()
    const expected = load.totalOk * factory.eventsPerBody
    log(
      `${name}: load done: ${load.totalRequests} requests, ${load.totalOk} answered 200 (${expected} events to deliver); waiting for deliveries`
    )
    const wait = await waitForDeliveries(consumers, expected)
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
      unknownMedia: stats.unknownMedia
    }
  } finally {
    await consumers.close()
  }
}

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

// ---------------------------------------------------------------------------------------------
// The service

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
  readonly standIn: GraphStandIn | undefined
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
  let standIn: GraphStandIn | undefined
  if (phase.graphStandIn) {
    if (workload.mediaOwners === undefined) throw new Error("--graph-standin without a media → owner map")
    const token = `IGQVJ-bench-${randomBytes(16).toString("hex")}`
    standIn = await startGraphStandIn(workload.mediaOwners, token, secret)
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
  // service is faster and hide the cost of tracing (or of owner resolution). A comparison turns
  // it off in both unless RATE_LIMIT_WEBHOOK is set.
  const limiterOff = (settings.compareTracing || settings.compareOwnerResolution) && process.env.RATE_LIMIT_WEBHOOK === undefined
  if (limiterOff) env.RATE_LIMIT_WEBHOOK = "0"
  const queues = owners.map((_, i) => `bench.${runId}.q${i}`)
  onCleanup("drop the bench database", async () => {
    await psql(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`)
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
    for (let i = 0; i < owners.length; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/worker-apps/`, {
        method: "POST",
        headers: { authorization: `Bearer ${secretKey}`, "content-type": "application/json" },
        body: JSON.stringify({ name: `bench-${runId}-${i}`, owner_id: owners[i], queue_name: queues[i] })
      })
      const text = await response.text()
      if (response.status !== 201) throw new Error(`POST /worker-apps/ answered ${response.status}: ${text.slice(0, 500)}`)
    }
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
    if (limiterOff) notes.push(`webhook rate limit off (RATE_LIMIT_WEBHOOK=0), as in the other phase of the comparison`)
    if (sink === undefined && settings.compareTracing) notes.push(`tracing off (no OTLP endpoint passed to the service)`)
    return { phase, port, secret, proc, database: dbName, queues, sink, standIn, notes, stop, stoppedAt: () => stoppedAt }
  } catch (err) {
    reportFailure(name, proc, err)
    throw err
  }
}

const reportFailure = (name: string, proc: Child, err: unknown) => {
  const tail = proc.tail()
  console.error(`[bench] ${name} phase failed: ${err instanceof Error ? err.message : String(err)}`)
  if (tail) console.error(`[bench] last ${name} output (${proc.logFile}):\n${tail}`)
}

/** One measured window (warm-up + duration) of a running service. */
const measureService = async (settings: Settings, workload: Workload, service: RunningService, name: string): Promise<PhaseResult> => {
  try {
    const measured = await measurePhase(
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
    if (sink === undefined) return result
    // what reached the sink while this window's load ran
    const exports = sink.exports().filter((e) => e.at >= result.load.measureStart && e.at < result.load.measureEnd)
    const spans = exports.every((e) => e.spans !== undefined) ? exports.reduce((sum, e) => sum + e.spans!, 0) : undefined
    return { ...result, tracing: { exportRequests: exports.length, exportBytes: exports.reduce((sum, e) => sum + e.bytes, 0), spans } }
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
const runServicePhase = async (settings: Settings, runId: string, workload: Workload, phase: ServicePhase) => {
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
const runSideBySide = async (settings: Settings, runId: string, workload: Workload) => {
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
    if (interrupted) break
    const name = `${baseName(service.phase)} (settling)`
    const settled = await measureService({ ...settings, warmupS: 0, durationS: SETTLE_S }, workload, service, name)
    settling.set(service, settled)
    log(`${name}: ${settled.delivered} events delivered, not measured`)
  }
  const results: Array<PhaseResult> = []
  for (const phase of settings.servicePhases) {
    if (interrupted) break
    const result = await measureService(settings, workload, { ...serviceOf(phase), phase }, phaseName(settings, phase))
    results.push(result)
  }
  for (const service of [a, b]) {
    const windows = results.filter((r) => sideOf(r.phase!) === sideOf(service.phase))
    await stopService(service, windows, settling.get(service))
  }
  return results
}

// ---------------------------------------------------------------------------------------------
// The baseline

const runBaselinePhase = async (settings: Settings, runId: string, workload: Workload) => {
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
    const result = await measurePhase(
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
    console.error(`[bench] baseline phase failed: ${err instanceof Error ? err.message : String(err)}`)
    const tail = proc.tail()
    if (tail) console.error(`[bench] last baseline output (${proc.logFile}):\n${tail}`)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const header = [
  "target",
  "accepted req/s",
  "accepted ev/s",
  "delivered ev/s",
  "accept p50 ms",
  "accept p99 ms",
  "e2e p50 ms",
  "e2e p99 ms",
  "peak RSS MB",
  "CPU %",
  "CPU µs/ev",
  "PG µs/ev",
  "MQ µs/ev",
  "WAL B/ev",
  "non-200",
  "dup",
  "missing"
]

const row = (r: PhaseResult): Array<string> => {
  const [p50, p99] = percentiles(r.load.okLatencies, [0.5, 0.99])
  const [e50, e99] = percentiles(r.e2e, [0.5, 0.99])
  const missing = Math.max(0, r.expectedEvents - r.delivered)
  const failures = [...r.load.measuredFailures.values()].reduce((a, b) => a + b, 0)
  return [
    r.name,
    fmt(r.load.measuredOk / r.durationS),
    fmt((r.load.measuredOk * r.eventsPerBody) / r.durationS),
    fmt(r.deliveredRate),
    fmt(p50, 2),
    fmt(p99, 2),
    fmt(e50, 1),
    fmt(e99, 1),
    fmt(r.peakRssMb, 0),
    fmt(r.cpuPct, 0),
    fmt(cpuPerEvent(r), 0),
    fmt(perDelivered(r, r.postgresCpuPct === undefined ? undefined : r.postgresCpuPct / 100 * 1e6), 0),
    fmt(perDelivered(r, r.rabbitmqCpuPct === undefined ? undefined : r.rabbitmqCpuPct / 100 * 1e6), 0),
    fmt(perDelivered(r, r.walBytesPerS), 0),
    failures === 0 ? "0" : formatCounts(r.load.measuredFailures),
    String(r.duplicates),
    String(missing)
  ]
}

/** The middle value (the mean of the two middle ones for an even count). */
const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((x, y) => x - y)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Side B of a comparison: the traced service (--compare-tracing) or the graph one (--compare-owner-resolution). */
const isSideB = (settings: Settings, phase: ServicePhase) => (settings.compareTracing ? phase.tracing : phase.graphStandIn)

/** A per-second figure of the window per delivered event. */
const perDelivered = (r: PhaseResult, perSecond: number | undefined) =>
  perSecond !== undefined && r.deliveredRate !== undefined && r.deliveredRate > 0 ? perSecond / r.deliveredRate : undefined

const cpuPerEvent = (r: PhaseResult) => perDelivered(r, r.cpuPct === undefined ? undefined : r.cpuPct / 100 * 1e6)

/**
 * Prints each round of a side-by-side comparison: its cost 1 − B / A of delivered ev/s and the
 * change in the service's CPU per delivered event. `label` names the cost ("tracing cost").
 * Rounds without both figures are printed as n/a and left out.
 */
const roundCosts = (settings: Settings, results: ReadonlyArray<PhaseResult>, label: string) => {
  const costs: Array<number> = []
  const cpuCosts: Array<number> = []
  for (let round = 1; round <= settings.rounds; round++) {
    const inRound = results.filter((r) => r.phase?.round === round)
    const a = inRound.find((r) => !isSideB(settings, r.phase!))
    const b = inRound.find((r) => isSideB(settings, r.phase!))
    const prefix = settings.rounds > 1 ? `round ${round}: ` : ""
    if (a?.deliveredRate === undefined || b?.deliveredRate === undefined || a.deliveredRate <= 0) {
      console.log(`${prefix}${label} n/a (${a === undefined || b === undefined ? "a service phase failed" : "no deliveries"})`)
      continue
    }
    const cost = 1 - b.deliveredRate / a.deliveredRate
    costs.push(cost)
    const [cpuA, cpuB] = [cpuPerEvent(a), cpuPerEvent(b)]
    const cpu = cpuA !== undefined && cpuB !== undefined ? (cpuB - cpuA) / cpuA : undefined
    if (cpu !== undefined) cpuCosts.push(cpu)
    console.log(
      `${prefix}${label} ${(cost * 100).toFixed(1)} % (${fmt(b.deliveredRate)} ${b.name} / ${fmt(a.deliveredRate)} ${a.name} delivered ev/s)` +
        (cpu === undefined ? "" : `; service CPU per delivered event ${fmt(cpuA, 0)} → ${fmt(cpuB, 0)} µs (${cpu >= 0 ? "+" : ""}${fmt(cpu * 100, 1)} %)`)
    )
  }
  return { costs, cpuCosts }
}

/**
 * --compare-tracing: the cost of each round (1 − traced / plain delivered ev/s, the round's two
 * windows back to back) and their median, PASS when the median is within the budget.
 * False on FAIL, a failed phase, a traced phase whose spans never reached the sink, or non-200
 * answers in a measured window.
 */
const compareTracingReport = (settings: Settings, results: ReadonlyArray<PhaseResult>): boolean => {
  console.log("")
  const { costs, cpuCosts } = roundCosts(settings, results, "tracing cost")
  let ok = costs.length === settings.rounds
  const phases = results.filter((r) => r.phase !== undefined)
  const silent = phases.filter((r) => r.phase!.tracing && ((r.tracing?.exportRequests ?? 0) === 0 || r.tracing?.spans === 0))
  if (silent.length > 0) {
    console.log(`no trace export reached the sink from ${silent.map((r) => r.name).join(", ")}`)
    ok = false
  }
  const missing = phases.filter((r) => r.expectedEvents > r.delivered)
  if (missing.length > 0) console.log(`WARNING: undelivered events in ${missing.map((r) => r.name).join(" and ")}: see the notes`)
  // 429s (a RATE_LIMIT_WEBHOOK set in the environment) or errors cap or distort a phase's throughput
  const refused = phases.filter((r) => r.load.measuredFailures.size > 0)
  if (refused.length > 0) {
    console.log(
      `NOT COMPARABLE: non-200 answers in the measured window of ${refused.map((r) => `${r.name} (${formatCounts(r.load.measuredFailures)})`).join(" and ")}`
    )
    ok = false
  }
  if (costs.length === 0) {
    console.log("tracing cost: n/a: FAIL")
    return false
  }
  const cost = median(costs)
  const pass = ok && cost <= TRACING_BUDGET
  const meanRate = (tracing: boolean) => {
    const rates = phases.filter((r) => r.phase!.tracing === tracing && r.deliveredRate !== undefined).map((r) => r.deliveredRate!)
    return rates.reduce((a, b) => a + b, 0) / rates.length
  }
  if (settings.rounds > 1) {
    console.log(
      `mean delivered ev/s over the windows: ${fmt(meanRate(true))} with tracing, ${fmt(meanRate(false))} without ` +
        `(cost ${fmt((1 - meanRate(true) / meanRate(false)) * 100, 1)} %)`
    )
  }
  console.log(
    `tracing cost (1 − delivered ev/s with tracing / without${settings.rounds > 1 ? `, median of ${costs.length} rounds` : ""}): ` +
      `${(cost * 100).toFixed(1)} %, budget ${(TRACING_BUDGET * 100).toFixed(0)} %: ${pass ? "PASS" : "FAIL"}` +
      (cpuCosts.length > 0 ? `; service CPU per delivered event +${fmt(median(cpuCosts) * 100, 1)} % (median)` : "")
  )
  return pass
}

/**
 * --compare-owner-resolution: the cost of each round (1 − graph / entry delivered ev/s, the
 * round's two windows back to back) and their median; PASS when the median is within the budget
 * and every window delivered every event to its media owner's queue.
 */
const compareOwnerResolutionReport = (settings: Settings, results: ReadonlyArray<PhaseResult>): boolean => {
  const graphs = results.filter((r) => r.phase?.graphStandIn === true)
  console.log("")
  const lastGraph = graphs[graphs.length - 1]
  if (lastGraph?.graph !== undefined) {
    const g = lastGraph.graph
    const inWindows = graphs.reduce((sum, r) => sum + (r.graph?.inWindow ?? 0), 0)
    console.log(
      `Graph API stand-in calls: ${g.calls} for ${g.mediaAsked} distinct media (${g.mediaInBodies} in the bodies), ` +
        `${inWindows} of them in the measured windows, for ${fmt(graphs.reduce((sum, r) => sum + r.expectedEvents, 0))} events accepted in the windows`
    )
  }
  const problems: Array<string> = []
  for (const r of results.filter((r) => r.phase !== undefined)) {
    if (r.load.measuredFailures.size > 0) problems.push(`${r.name}: non-200 answers in the measured window (${formatCounts(r.load.measuredFailures)})`)
    if (r.expectedEvents > r.delivered) problems.push(`${r.name}: ${r.expectedEvents - r.delivered} of ${r.expectedEvents} accepted events missing`)
    if (r.misrouted > 0) problems.push(`${r.name}: ${r.misrouted} messages whose x-owner-id is not their queue's owner`)
    if (r.misroutedByMedia > 0) problems.push(`${r.name}: ${r.misroutedByMedia} messages outside their media owner's queue`)
    if (r.unknownMedia > 0) problems.push(`${r.name}: ${r.unknownMedia} messages without a media_id of the bench's`)
  }
  if (lastGraph?.graph === undefined || lastGraph.graph.calls === 0) problems.push(`service[graph]: the Graph API stand-in was never asked`)
  else if (lastGraph.graph.badAuth > 0) problems.push(`service[graph]: ${lastGraph.graph.badAuth} Graph API calls with a wrong token or appsecret_proof`)
  const { costs, cpuCosts } = roundCosts(settings, results, "owner resolution cost")
  if (costs.length < settings.rounds) problems.push(`${settings.rounds - costs.length} of ${settings.rounds} rounds without a result`)
  if (costs.length === 0) {
    console.log(`owner resolution cost: n/a: FAIL`)
    if (problems.length > 0) console.log(`NOT COMPARABLE: ${problems.join("; ")}`)
    return false
  }
  const cost = median(costs)
  const verdict = problems.length > 0 ? "NOT COMPARABLE" : cost <= OWNER_RESOLUTION_BUDGET ? "PASS" : "FAIL"
  console.log(
    `owner resolution cost (1 − delivered ev/s graph / entry${settings.rounds > 1 ? `, median of ${costs.length} rounds` : ""}): ` +
      `${(cost * 100).toFixed(1)} %, budget ${(OWNER_RESOLUTION_BUDGET * 100).toFixed(0)} %: ${verdict}` +
      (cpuCosts.length > 0 ? `; service CPU per delivered event ${median(cpuCosts) >= 0 ? "+" : ""}${fmt(median(cpuCosts) * 100, 1)} % (median)` : "")
  )
  if (problems.length > 0) console.log(`NOT COMPARABLE: ${problems.join("; ")}`)
  return verdict === "PASS"
}

// ---------------------------------------------------------------------------------------------
// Main

const main = async () => {
  const settings = parseSettings(process.argv.slice(2))
  const quote = (s: string) => (/^[\w./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)
  console.log(`command: ${[process.execPath, ...process.argv.slice(1)].map(quote).join(" ")}`)
  const tracingOn = settings.servicePhases.some((phase) => phase.tracing)
  const targets = tracingOn || settings.ownerAware
    ? [...settings.servicePhases.map((phase) => phaseName(settings, phase)), ...(settings.runBaseline ? ["baseline"] : [])].join(",")
    : [settings.runService && "service", settings.runBaseline && "baseline"].filter(Boolean).join("+")
  const ownerModes = [...new Set(settings.servicePhases.map((phase) => phase.ownerResolution))]
  console.log(
    `settings: duration=${settings.durationS}s warmup=${settings.warmupS}s concurrency=${settings.concurrency} apps=${settings.apps} ` +
      `changes-per-body=${settings.changesPerBody} targets=${targets} ` +
      `OWNER_RESOLUTION=${ownerModes.length > 0 ? ownerModes.join(",") : settings.ownerResolution} queue type=${settings.queueType} node=${process.version}` +
      (settings.ownerAware ? ` media-per-app=${settings.mediaPerApp}` : "") +
      (tracingOn
        ? ` tracing=${settings.otlpProtocol} to the bench's OTLP sink, sampler=${process.env.OTEL_TRACES_SAMPLER ? `${process.env.OTEL_TRACES_SAMPLER}${process.env.OTEL_TRACES_SAMPLER_ARG ? `(${process.env.OTEL_TRACES_SAMPLER_ARG})` : ""}` : "default"}`
        : "") +
      (settings.graphLimits === undefined ? "" : ` ${describeGraphLimits(settings.graphLimits, settings.apps * settings.mediaPerApp)}`)
  )
  if (settings.compareOwnerResolution && process.env.OWNER_RESOLUTION) {
    log(`OWNER_RESOLUTION=${process.env.OWNER_RESOLUTION} from the environment is ignored: the comparison runs entry, then graph`)
  }
  const limits = settings.graphLimits
  if (limits !== undefined && limits.fillS > Math.min(settings.warmupS, OWNER_LOOKUP_WAIT_S)) {
    log(
      `WARNING: at ${limits.callsPerSecond} calls/s the cold owner cache needs ~${limits.fillS.toFixed(1)} s, longer than ` +
        (settings.warmupS < OWNER_LOOKUP_WAIT_S ? `the ${settings.warmupS} s warm-up` : `the ${OWNER_LOOKUP_WAIT_S} s routing waits for a lookup`) +
        `: expect Graph API calls in the measured window, or events left pending until DELIVERY_LEASE`
    )
  }
  const runId = randomBytes(4).toString("hex")
  const ownerDigits = randomInt(1e5, 1e6)
  const ownerBase = `1784${ownerDigits}`
  const owners = Array.from({ length: settings.apps }, (_, i) => `${ownerBase}${String(i).padStart(4, "0")}`)
  const media = settings.ownerAware ? mediaIdsFor(owners, settings.mediaPerApp) : undefined
  const workload: Workload = {
    owners,
    // as long as an owner id (the bodies keep their size), and no worker app's (1783… vs 1784…)
    account: `1783${ownerDigits}${"0".repeat(4)}`,
    media,
    mediaOwners: media === undefined ? undefined : new Map(media.flatMap((list, i) => list.map((id) => [id, owners[i]!] as const)))
  }
  log(`run id ${runId}`)

  const results: Array<PhaseResult> = []
  let failed = false
  try {
    if (settings.compareTracing || settings.compareOwnerResolution) {
      try {
        results.push(...(await runSideBySide(settings, runId, workload)))
      } catch {
        failed = true
      }
      await runCleanups() // stop both services, delete their queues, drop their databases
    } else {
      for (const [i, phase] of settings.servicePhases.entries()) {
        if (interrupted) break
        try {
          // a comparison's second phase gets its own database and queues
          results.push(await runServicePhase(settings, i === 0 ? runId : `${runId}g${i}`, workload, phase))
        } catch {
          failed = true
        }
        await runCleanups() // stop the service, delete its queues, drop its database before the next phase runs
      }
    }
    if (settings.runBaseline && !interrupted) {
      try {
        results.push(await runBaselinePhase(settings, runId, workload))
      } catch {
        failed = true
      }
    }
  } finally {
    await runCleanups()
  }

  if (results.length > 0) {
    console.log("")
    console.log(renderTable(header, results.map(row)))
    console.log("")
    for (const r of results) for (const note of r.notes) console.log(`  ${r.name}: ${note}`)
    const baseline = results.find((r) => r.name === "baseline")
    const services = results.filter((r) => r.phase !== undefined)
    if (baseline && services.length > 0) {
      console.log("")
      for (const service of services) {
        const ratio =
          service.deliveredRate !== undefined && baseline.deliveredRate !== undefined && baseline.deliveredRate > 0
            ? service.deliveredRate / baseline.deliveredRate
            : undefined
        console.log(
          `${service.name}/baseline delivered events/s: ${ratio === undefined ? "n/a (no deliveries)" : ratio.toFixed(2)}` +
            ` (${fmt(service.deliveredRate)} / ${fmt(baseline.deliveredRate)})`
        )
      }
    }
    if (settings.compareTracing && !compareTracingReport(settings, results)) failed = true
    if (settings.compareOwnerResolution && !compareOwnerResolutionReport(settings, results)) failed = true
    console.log("")
    console.log(
      "accepted = 200s of requests started in the measured window / duration; delivered ev/s = unique deliveries since the window opened / " +
        "(last delivery − window start); e2e = arrival − body received_at; CPU % = target process CPU time over the window (100 = one core); " +
        "PG / MQ µs/ev = CPU of Postgres (its background processes and the target database's backends) / of RabbitMQ (beam.smp) " +
        "per delivered event; WAL B/ev = pg_stat_wal wal_bytes written in the window (whole cluster) per delivered event; " +
        "peak RSS = VmHWM; missing = events answered 200 (warm-up included) never delivered"
    )
  }
  process.exitCode = failed ? 1 : 0
}

await main()
