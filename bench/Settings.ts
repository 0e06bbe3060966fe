/** What the command line and the BENCH_* environment ask for, and the settings line that says it. */
import type { QueueType } from "./Deliveries.ts"
import { log } from "./load.ts"
import { OVERLOAD_CONNECTIONS, PACED_CONNECTIONS, PACED_DRAIN_MS } from "./PacedLoad.ts"

export interface Settings {
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
  /** --rate: requests per second on a fixed schedule (open loop) instead of the closed loop. */
  readonly rate: number | undefined
  /** --overload: the paced rate as a multiple of what a short closed-loop window delivered. */
  readonly overload: number | undefined
  /** The paced load's connection pool: at most this many requests in flight (--rate, --overload). */
  readonly connections: number
}

/** One run of the service. */
export interface ServicePhase {
  /** Traces exported to the bench's OTLP sink. */
  readonly tracing: boolean
  /** OWNER_RESOLUTION of the service. */
  readonly ownerResolution: string
  /** A Graph API stand-in answers the owner lookups; every entry[].id is an account without a worker app. */
  readonly graphStandIn: boolean
  /** Which round of a multi-round comparison (1-based). */
  readonly round: number
}

export interface GraphLimits {
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
export const planGraphLimits = (distinctMedia: number, warmupS: number): GraphLimits => {
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

export const describeGraphLimits = (limits: GraphLimits, distinctMedia: number) =>
  `GRAPH_API_CALLS_PER_SECOND=${limits.callsPerSecond}` +
  (limits.setByBench
    ? ` (set by the bench: the default ${GRAPH_DEFAULT_CALLS_PER_SECOND}/s would need ${((distinctMedia - limits.burst) / GRAPH_DEFAULT_CALLS_PER_SECOND).toFixed(1)} s for ${distinctMedia} media; ` +
      `allowed ${limits.budgetS.toFixed(2)} s)`
    : process.env.GRAPH_API_CALLS_PER_SECOND
    ? " (from the environment)"
    : " (the service's default)") +
  ` burst=${limits.burst}: a cold cache fills in ~${limits.fillS.toFixed(2)} s`

export const phaseName = (settings: Settings, phase: ServicePhase) =>
  `service${settings.ownerAware ? `[${phase.ownerResolution}]` : ""}${phase.tracing ? "+tracing" : ""}${settings.rounds > 1 ? ` #${phase.round}` : ""}`

/** Side B of a comparison: the traced service (--compare-tracing) or the graph one (--compare-owner-resolution). */
export const isSideB = (settings: Settings, phase: ServicePhase) => (settings.compareTracing ? phase.tracing : phase.graphStandIn)

export type OtlpProtocol = "http/protobuf" | "http/json" | "grpc"

/** Largest throughput cost of tracing that --compare-tracing accepts (the performance goal: ≤ 10 %). */
export const TRACING_BUDGET = 0.10
/** Rounds of a comparison unless --rounds says otherwise: one pair of windows is noisy, the median of ten steadier. */
const DEFAULT_COMPARISON_ROUNDS = 10
/** A comparison's window (warm-up + measured) unless --warmup / --duration say otherwise. */
const DEFAULT_WINDOW_WARMUP_S = 1
const DEFAULT_WINDOW_DURATION_S = 5
/** Seconds of unmeasured load each service of a comparison gets before the first window. */
export const SETTLE_S = 10
/** Largest throughput cost of OWNER_RESOLUTION=graph (cache warm) over entry that --compare-owner-resolution accepts. */
export const OWNER_RESOLUTION_BUDGET = 0.1
/** Media per app with --graph-standin / --compare-owner-resolution unless --media-per-app says otherwise. */
const DEFAULT_MEDIA_PER_APP = 10
/** Media per owner of the plain bodies (bench/load.ts makeBodyFactory's default). */
const PLAIN_MEDIA_PER_OWNER = 16
/** The service's Graph API token bucket defaults (docs/owner-resolution.md). */
const GRAPH_DEFAULT_CALLS_PER_SECOND = 10
const GRAPH_DEFAULT_BURST = 10
/** Seconds routing waits for one owner lookup: a cold cache must fill well within it. */
const OWNER_LOOKUP_WAIT_S = 3
/** The issue's goal for paced load: accept p99, from each request's due time, at most this. */
export const PACED_P99_GOAL_MS = 25
/** --overload without a number. */
const DEFAULT_OVERLOAD_FACTOR = 5
/** --overload: RSS after this many seconds is the reference the rest of the run must stay near. */
export const OVERLOAD_RSS_AT_S = 10
/** --overload: the largest RSS after OVERLOAD_RSS_AT_S may exceed the value at it by this share ("RSS flat"). */
export const OVERLOAD_RSS_GROWTH = 0.1
/** --overload: seconds of the closed-loop window (after the warm-up) that says what the target sustains. */
export const SUSTAIN_S = 5

const usage = `usage: node bench/run.ts [--duration S] [--warmup S] [--concurrency C] [--apps N] [--changes-per-body E] [--baseline-only | --service-only]
                         [--tracing] [--compare-tracing [--rounds N] [--with-baseline]]
                         [--graph-standin] [--compare-owner-resolution [--rounds N] [--with-baseline]] [--media-per-app M]
                         [--rate R | --overload [K]] [--connections N]
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
  --with-baseline    run the baseline too (what happens anyway without --compare-tracing / --compare-owner-resolution)
  --rate R           open loop instead of the closed loop: request i is due at the start + i/R s (warm-up included) and
                     goes out on a free keep-alive connection of a pool of up to --connections (when none is free it waits,
                     and the wait counts); accept latency is from the due time; requests still waiting ${PACED_DRAIN_MS / 1000} s after the
                     window closed are counted unsent; prints PASS/FAIL per target for accept p99 ≤ ${PACED_P99_GOAL_MS} ms with every
                     request due in the window answered 200 (exit code 1 on FAIL)
  --overload [K]     first a ${SUSTAIN_S} s closed-loop window (after the warm-up) says what the target sustains (delivered ev/s);
                     then --duration s paced (as --rate, no warm-up) at K × that (default K ${DEFAULT_OVERLOAD_FACTOR}); prints the answers by kind
                     (200, 503 with and without Retry-After, other statuses, connection errors), VmRSS each second, and
                     PASS only with nothing but 200 and 503 + Retry-After, the largest RSS after ${OVERLOAD_RSS_AT_S} s within ${OVERLOAD_RSS_GROWTH * 100} % of
                     the RSS at ${OVERLOAD_RSS_AT_S} s, and every event answered 200 delivered (exit code 1 on FAIL); --duration must exceed
                     ${OVERLOAD_RSS_AT_S}; the service's webhook rate limit is off unless RATE_LIMIT_WEBHOOK is set (the bench is one client)
  --connections N    the pool of --rate / --overload (default ${PACED_CONNECTIONS}; ${OVERLOAD_CONNECTIONS} with --overload, more than the service's
                     journal mailbox of 2048 requests, so the service and not the pool decides what waits)`

export const parseSettings = (argv: ReadonlyArray<string>): Settings => {
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
    // --overload takes its factor only when one follows
    if (arg === "--overload") {
      booleans.add("overload")
      const factor = argv[i + 1]
      if (factor !== undefined && !factor.startsWith("--")) flags.set("overload", argv[++i]!)
      continue
    }
    const match = /^--(duration|warmup|concurrency|apps|changes-per-body|media-per-app|rounds|rate|overload|connections)(?:=(.*))?$/.exec(arg)
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
  if (flags.has("overload")) booleans.add("overload")
  if (flags.has("rate")) booleans.add("rate")
  exclusive("rate", "overload")
  for (const paced of ["rate", "overload"]) {
    exclusive(paced, "compare-tracing")
    exclusive(paced, "compare-owner-resolution")
  }
  if (flags.has("connections") && !booleans.has("rate") && !booleans.has("overload")) {
    console.error(`--connections goes with --rate or --overload (the closed loop uses --concurrency)\n${usage}`)
    process.exit(2)
  }
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
  const overload = booleans.has("overload") ? num("overload", "BENCH_OVERLOAD", DEFAULT_OVERLOAD_FACTOR, false, 1) : undefined
  const durationS = num("duration", "BENCH_DURATION", sideBySide ? DEFAULT_WINDOW_DURATION_S : 15, false, 0.5)
  if (overload !== undefined && durationS <= OVERLOAD_RSS_AT_S) {
    console.error(`--overload needs --duration above ${OVERLOAD_RSS_AT_S} s (RSS after ${OVERLOAD_RSS_AT_S} s is compared with RSS at it)\n${usage}`)
    process.exit(2)
  }
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
    durationS,
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
    rabbitmqUrl: process.env.RABBITMQ_URL || "amqp://guest:guest@127.0.0.1:5672",
    rate: booleans.has("rate") ? num("rate", "BENCH_RATE", 0, false, 1) : undefined,
    overload,
    connections: num("connections", "BENCH_CONNECTIONS", overload === undefined ? PACED_CONNECTIONS : OVERLOAD_CONNECTIONS, true, 1)
  }
}

/** The command line, the settings line and the warnings about them. */
export const printSettings = (settings: Settings) => {
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
      (settings.rate !== undefined ? ` rate=${settings.rate}/s connections=${settings.connections}` : "") +
      (settings.overload !== undefined ? ` overload=${settings.overload}× connections=${settings.connections}` : "") +
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
}
