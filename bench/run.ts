/**
 * `npm run bench`: drives signed Instagram webhooks at the real service (src/main.ts in a child
 * process, its own database and queues) and at a minimal baseline (bench/baseline.ts: verify,
 * parse, publish with confirm, no database), counts what reaches the worker-app queues, and
 * prints one table row per target plus the service/baseline ratio of delivered events/s.
 *
 *   npm run bench -- [--duration 15] [--warmup 2] [--concurrency 32] [--apps 10]
 *                    [--changes-per-body 1] [--baseline-only | --service-only]
 *                    [--tracing] [--compare-tracing [--with-baseline]]
 *
 * The same settings can come from BENCH_DURATION, BENCH_WARMUP, BENCH_CONCURRENCY, BENCH_APPS,
 * BENCH_CHANGES_PER_BODY (flags win). OWNER_RESOLUTION (default `entry`), QUEUE_TYPE, OTEL_*,
 * GRAPH_API_URL, INSTAGRAM_ACCESS_TOKEN and RATE_LIMIT_* are passed through to the service.
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
 * `--compare-tracing` runs the service phase twice with the same settings, first with tracing
 * off (OTEL_EXPORTER_OTLP_ENDPOINT / _TRACES_ENDPOINT not passed), then as `--tracing`, and
 * prints the throughput cost 1 − delivered ev/s(service+tracing) / delivered ev/s(service)
 * with PASS / FAIL against a 15 % budget (FAIL, no export reaching the sink, or non-200
 * answers in either window set exit code 1). Both phases run with the service's per-client
 * webhook rate limit off (RATE_LIMIT_WEBHOOK=0, unless set in the environment): the bench is
 * one client, and the limit (1000/s) would cap the faster phase. It runs no baseline unless
 * `--with-baseline` is given.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes, randomInt } from "node:crypto"
import { createWriteStream } from "node:fs"
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
  declareAppQueue,
  deleteQueues,
  fmt,
  formatCounts,
  type LoadResult,
  makeBodyFactory,
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
  /** Service phases to run, in order: false = tracing off, true = tracing to the bench's OTLP sink. */
  readonly servicePhases: ReadonlyArray<boolean>
  readonly compareTracing: boolean
  /** OTLP protocol of the sink and the service's exporter (when a phase traces). */
  readonly otlpProtocol: OtlpProtocol
  readonly ownerResolution: string
  readonly queueType: QueueType
  readonly rabbitmqUrl: string
}

type OtlpProtocol = "http/protobuf" | "http/json" | "grpc"

/** Largest throughput cost of tracing that --compare-tracing accepts (issue 5). */
const TRACING_BUDGET = 0.15

const usage = `usage: node bench/run.ts [--duration S] [--warmup S] [--concurrency C] [--apps N] [--changes-per-body E] [--baseline-only | --service-only]
                         [--tracing] [--compare-tracing [--with-baseline]]
  --tracing          the service exports traces (OTLP, protocol from OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf)
                     to a sink in the bench process; its row is "service+tracing", the notes count the exports received
  --compare-tracing  the service phase twice, tracing off ("service") then on ("service+tracing"), and the throughput cost
                     1 - delivered(tracing)/delivered(plain) with PASS/FAIL against ${TRACING_BUDGET * 100} % (exit code 1 on FAIL);
                     webhook rate limit off in both phases unless RATE_LIMIT_WEBHOOK is set; no baseline unless --with-baseline
  --with-baseline    run the baseline too (what happens anyway without --compare-tracing)`

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
      arg === "--with-baseline"
    ) {
      booleans.add(arg.slice(2))
      continue
    }
    const match = /^--(duration|warmup|concurrency|apps|changes-per-body)(?:=(.*))?$/.exec(arg)
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
  const compareTracing = booleans.has("compare-tracing")
  const rawProtocol = process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || process.env.OTEL_EXPORTER_OTLP_PROTOCOL || "http/protobuf"
  const tracingWanted = compareTracing || booleans.has("tracing")
  if (tracingWanted && rawProtocol !== "http/protobuf" && rawProtocol !== "http/json" && rawProtocol !== "grpc") {
    console.error(`OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL must be http/protobuf, http/json or grpc, got ${rawProtocol}`)
    process.exit(2)
  }
  const queueType = process.env.QUEUE_TYPE === "classic" ? "classic" : "quorum"
  const runService = !booleans.has("baseline-only")
  return {
    durationS: num("duration", "BENCH_DURATION", 15, false, 0.5),
    warmupS: num("warmup", "BENCH_WARMUP", 2, false, 0),
    concurrency: num("concurrency", "BENCH_CONCURRENCY", 32, true, 1),
    apps: num("apps", "BENCH_APPS", 10, true, 1),
    changesPerBody: num("changes-per-body", "BENCH_CHANGES_PER_BODY", 1, true, 1),
    runService,
    runBaseline: compareTracing ? booleans.has("with-baseline") : !booleans.has("service-only"),
    servicePhases: compareTracing ? [false, true] : runService ? [booleans.has("tracing")] : [],
    compareTracing,
    otlpProtocol: rawProtocol as OtlpProtocol, // checked above when a phase traces
    ownerResolution: process.env.OWNER_RESOLUTION || "entry",
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

const startChild = (name: string, script: string, env: Record<string, string>, runId: string): Child => {
  const logFile = join(tmpdir(), `chatico-bench-${runId}-${name}.log`)
  const out = createWriteStream(logFile)
  const child = spawn(process.execPath, [script], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
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

/** What the sink received, overall and in the measured window. */
const sinkNotes = (sink: OtlpSink, load: LoadResult, acceptedEvents: number, stoppedAt: number | undefined) => {
  const all = sink.exports()
  const total = all.reduce((sum, e) => sum + e.bytes, 0)
  const inWindow = all.filter((e) => e.at >= load.measureStart && e.at < load.measureEnd)
  const windowBytes = inWindow.reduce((sum, e) => sum + e.bytes, 0)
  const afterStop = stoppedAt === undefined ? [] : all.filter((e) => e.at >= stoppedAt)
  const spans = all.every((e) => e.spans !== undefined) ? all.reduce((sum, e) => sum + e.spans!, 0) : undefined
  const types = [...sink.contentTypes()].map(([type, n]) => `${type} ×${n}`).join(", ")
  const notes = [
    `OTLP sink (${sink.protocol}, ${sink.endpoint}) received ${all.length} export requests, ${formatBytes(total)}, ` +
      `${spans === undefined ? "span count n/a" : `${spans} spans`} ` +
      `(${inWindow.length} requests, ${formatBytes(windowBytes)} = ${formatBytes(windowBytes / ((load.measureEnd - load.measureStart) / 1000))}/s in the measured window; ` +
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
  readonly notes: Array<string>
  /** What the bench's OTLP sink received (phases with tracing on). */
  readonly tracing?: { readonly exportRequests: number; readonly exportBytes: number; readonly spans: number | undefined }
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

const measurePhase = async (
  name: string,
  settings: Settings,
  target: { readonly port: number; readonly secret: string; readonly proc: Child },
  owners: ReadonlyArray<string>,
  queues: ReadonlyArray<string>,
  idPrefix: string
): Promise<PhaseResult> => {
  const notes: Array<string> = []
  const consumers = await startConsumers(settings.rabbitmqUrl, queues.map((queue, i) => ({ queue, owner: owners[i]! })))
  try {
    const unroutableBefore = await queueDepth(consumers.connection, "chatico.unroutable")
    const factory = makeBodyFactory({ owners, changesPerBody: settings.changesPerBody, idPrefix })
    const warmupMs = settings.warmupS * 1000
    const durationMs = settings.durationS * 1000
    // CPU of the target over the measured window
    let cpuStart: number | undefined
    let cpuEnd: number | undefined
    const cpuTimers = [
      setTimeout(() => (cpuStart = target.proc.sampler.cpuSeconds()), warmupMs),
      setTimeout(() => (cpuEnd = target.proc.sampler.cpuSeconds()), warmupMs + durationMs)
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
    const cpuPct = cpuStart !== undefined && cpuEnd !== undefined ? ((cpuEnd - cpuStart) / settings.durationS) * 100 : undefined
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
      notes
    }
  } finally {
    await consumers.close()
  }
}

// ---------------------------------------------------------------------------------------------
// The service

const runServicePhase = async (settings: Settings, runId: string, owners: ReadonlyArray<string>, tracing = false) => {
  const name = tracing ? "service+tracing" : "service"
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
    OWNER_RESOLUTION: settings.ownerResolution
  }
  const passThrough = [
    "GRAPH_API_URL",
    "INSTAGRAM_ACCESS_TOKEN",
    "INSTAGRAM_APP_ID",
    "QUEUE_TYPE",
    "MAX_BODY_BYTES",
    "NODE_ENV",
    "NODE_OPTIONS"
  ]
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (key.startsWith("OTEL_") || key.startsWith("RATE_LIMIT") || passThrough.includes(key)) env[key] = value
  }
  // --tracing / --compare-tracing: the sink is the only destination of this phase's traces, and
  // the untraced phase of a comparison exports nothing.
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
  // The bench is a single client: the service's per-client webhook limit (default 1000/s, burst
  // 2000) would cap whichever phase is faster and hide the cost of tracing. A comparison turns it
  // off in both phases unless RATE_LIMIT_WEBHOOK is set.
  const limiterOff = settings.compareTracing && process.env.RATE_LIMIT_WEBHOOK === undefined
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

  log(`${name}: starting src/main.ts on 127.0.0.1:${port}, database ${dbName}, OWNER_RESOLUTION=${settings.ownerResolution}`)
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

    const result = await measurePhase(name, settings, { port, secret, proc }, owners, queues, `9${randomInt(1e5, 1e6)}${tracing ? 3 : 1}`)
    result.notes.unshift(...notes)
    if (limiterOff) result.notes.push(`webhook rate limit off (RATE_LIMIT_WEBHOOK=0), as in the other phase of the comparison`)
    if (!proc.isRunning()) result.notes.push(`the service process died during the run (see ${proc.logFile})`)
    const stopResult = await stop()
    if (stopResult !== undefined && !stopResult.alreadyExited) {
      result.notes.push(`SIGTERM → exit in ${(stopResult.ms / 1000).toFixed(2)} s (code ${stopResult.code}${stopResult.killed ? ", had to SIGKILL" : ""})`)
    }
    if (sink === undefined) {
      if (settings.compareTracing) result.notes.push(`tracing off (no OTLP endpoint passed to the service)`)
      return result
    }
    await sleep(200) // a final export the exporter sent while the process exited
    result.notes.push(...sinkNotes(sink, result.load, result.expectedEvents, stoppedAt))
    const exports = sink.exports()
    const spans = exports.every((e) => e.spans !== undefined) ? exports.reduce((sum, e) => sum + e.spans!, 0) : undefined
    return { ...result, tracing: { exportRequests: exports.length, exportBytes: exports.reduce((sum, e) => sum + e.bytes, 0), spans } }
  } catch (err) {
    const tail = proc.tail()
    console.error(`[bench] ${name} phase failed: ${err instanceof Error ? err.message : String(err)}`)
    if (tail) console.error(`[bench] last ${name} output (${proc.logFile}):\n${tail}`)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// The baseline

const runBaselinePhase = async (settings: Settings, runId: string, owners: ReadonlyArray<string>) => {
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
    const result = await measurePhase("baseline", settings, { port, secret, proc }, owners, queues, `8${randomInt(1e5, 1e6)}2`)
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
    failures === 0 ? "0" : formatCounts(r.load.measuredFailures),
    String(r.duplicates),
    String(missing)
  ]
}

// ---------------------------------------------------------------------------------------------
// Main

const main = async () => {
  const settings = parseSettings(process.argv.slice(2))
  const quote = (s: string) => (/^[\w./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)
  console.log(`command: ${[process.execPath, ...process.argv.slice(1)].map(quote).join(" ")}`)
  const tracingOn = settings.servicePhases.includes(true)
  const targets = tracingOn
    ? [...settings.servicePhases.map((t) => (t ? "service+tracing" : "service")), ...(settings.runBaseline ? ["baseline"] : [])].join(",")
    : [settings.runService && "service", settings.runBaseline && "baseline"].filter(Boolean).join("+")
  console.log(
    `settings: duration=${settings.durationS}s warmup=${settings.warmupS}s concurrency=${settings.concurrency} apps=${settings.apps} ` +
      `changes-per-body=${settings.changesPerBody} targets=${targets} ` +
      `OWNER_RESOLUTION=${settings.ownerResolution} queue type=${settings.queueType} node=${process.version}` +
      (tracingOn
        ? ` tracing=${settings.otlpProtocol} to the bench's OTLP sink, sampler=${process.env.OTEL_TRACES_SAMPLER ? `${process.env.OTEL_TRACES_SAMPLER}${process.env.OTEL_TRACES_SAMPLER_ARG ? `(${process.env.OTEL_TRACES_SAMPLER_ARG})` : ""}` : "default"}`
        : "")
  )
  const runId = randomBytes(4).toString("hex")
  const ownerBase = `1784${randomInt(1e5, 1e6)}`
  const owners = Array.from({ length: settings.apps }, (_, i) => `${ownerBase}${String(i).padStart(4, "0")}`)
  log(`run id ${runId}`)

  const results: Array<PhaseResult> = []
  let failed = false
  try {
    for (const [i, tracing] of settings.servicePhases.entries()) {
      if (interrupted) break
      try {
        // a comparison's second phase gets its own database and queues
        results.push(await runServicePhase(settings, i === 0 ? runId : `${runId}t`, owners, tracing))
      } catch {
        failed = true
      }
      await runCleanups() // stop the service, delete its queues, drop its database before the next phase runs
    }
    if (settings.runBaseline && !interrupted) {
      try {
        results.push(await runBaselinePhase(settings, runId, owners))
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
    const services = results.filter((r) => r.name === "service" || r.name === "service+tracing")
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
    if (settings.compareTracing) {
      const plain = results.find((r) => r.name === "service")
      const traced = results.find((r) => r.name === "service+tracing")
      console.log("")
      if (plain?.deliveredRate === undefined || traced?.deliveredRate === undefined || plain.deliveredRate <= 0) {
        console.log(`tracing cost: n/a (${plain === undefined || traced === undefined ? "a service phase failed" : "no deliveries"}): FAIL`)
        failed = true
      } else {
        const cost = 1 - traced.deliveredRate / plain.deliveredRate
        const exported = (traced.tracing?.exportRequests ?? 0) > 0 && traced.tracing?.spans !== 0
        const pass = exported && cost <= TRACING_BUDGET
        console.log(
          `tracing cost (1 − delivered ev/s service+tracing / service): ${(cost * 100).toFixed(1)} %` +
            ` (${fmt(traced.deliveredRate)} / ${fmt(plain.deliveredRate)}), budget ${(TRACING_BUDGET * 100).toFixed(0)} %: ` +
            (pass ? "PASS" : exported ? "FAIL" : "FAIL (no trace export reached the sink)")
        )
        const perEvent = (r: PhaseResult) =>
          r.cpuPct !== undefined && r.deliveredRate !== undefined && r.deliveredRate > 0 ? (r.cpuPct / 100 / r.deliveredRate) * 1e6 : undefined
        const [cpuPlain, cpuTraced] = [perEvent(plain), perEvent(traced)]
        if (cpuPlain !== undefined && cpuTraced !== undefined) {
          console.log(
            `service CPU per delivered event: ${fmt(cpuPlain, 0)} µs without tracing, ${fmt(cpuTraced, 0)} µs with (${cpuTraced >= cpuPlain ? "+" : ""}${fmt(((cpuTraced - cpuPlain) / cpuPlain) * 100, 1)} %)`
          )
        }
        const missing = [plain, traced].filter((r) => r.expectedEvents > r.delivered)
        if (missing.length > 0) console.log(`WARNING: undelivered events in ${missing.map((r) => r.name).join(" and ")}: see the notes`)
        // 429s (a RATE_LIMIT_WEBHOOK set in the environment) or errors cap or distort a phase's throughput
        const refused = [plain, traced].filter((r) => r.load.measuredFailures.size > 0)
        if (refused.length > 0) {
          console.log(
            `NOT COMPARABLE: non-200 answers in the measured window of ${refused.map((r) => `${r.name} (${formatCounts(r.load.measuredFailures)})`).join(" and ")}`
          )
          failed = true
        }
        if (!pass) failed = true
      }
    }
    console.log("")
    console.log(
      "accepted = 200s of requests started in the measured window / duration; delivered ev/s = unique deliveries since the window opened / " +
        "(last delivery − window start); e2e = arrival − body received_at; CPU % = target process CPU time over the window (100 = one core); " +
        "missing = events answered 200 (warm-up included) never delivered"
    )
  }
  process.exitCode = failed ? 1 : 0
}

await main()
