/** The bench's child processes (the service, the baseline): start with a log file, wait until up, stop; their CPU and memory from /proc. */
import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import { Worker } from "node:worker_threads"
import { ROOT, startFlags } from "../test/support/ServiceProcess.ts"
import { readStatusKb } from "./ProcStatus.ts"

/** BENCH_SERVICE_ROOT: another checkout (e.g. an earlier commit) whose service to run, for a before/after figure. */
const SERVICE_ROOT = process.env.BENCH_SERVICE_ROOT ?? ROOT

export interface Child {
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
 * Node flags for the service child (not the baseline): those of `npm start`, so it runs as in
 * production, then BENCH_SERVICE_NODE_FLAGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to
 * profile it (NODE_OPTIONS refuses --cpu-prof).
 */
const nodeFlags = (name: string): Array<string> =>
  name.startsWith("service")
    ? [...startFlags(SERVICE_ROOT), ...(process.env.BENCH_SERVICE_NODE_FLAGS ?? "").split(/\s+/).filter((flag) => flag !== "")]
    : []

export const startChild = (name: string, script: string, env: Record<string, string>, runId: string): Child => {
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
export const stopChild = async (proc: Child, timeoutMs = 30_000) => {
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

export const waitHttp200 = async (proc: Child, url: string, timeoutMs: number) => {
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

/** Says why a phase failed and what its process wrote last. */
export const reportFailure = (name: string, proc: Child, err: unknown) => {
  const tail = proc.tail()
  console.error(`[bench] ${name} phase failed: ${err instanceof Error ? err.message : String(err)}`)
  if (tail) console.error(`[bench] last ${name} output (${proc.logFile}):\n${tail}`)
}

// ---------------------------------------------------------------------------------------------
// Process statistics (Linux /proc)

export interface ProcSampler {
  /** Peak resident set in bytes: max of VmHWM and the sampled VmRSS. */
  readonly peakRssBytes: () => number
  /** utime+stime of the process in seconds (undefined once it is gone). */
  readonly cpuSeconds: () => number | undefined
  readonly stop: () => void
}

const clockTicks = 100 // _SC_CLK_TCK on Linux

const readCpuSeconds = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // fields after the command name, which is in parentheses and may contain spaces
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // rest[0] is field 3 (state); utime is field 14, stime 15
    return (Number(rest[11]) + Number(rest[12])) / clockTicks
  } catch {
    return undefined
  }
}

export const sampleProcess = (pid: number, everyMs = 500): ProcSampler => {
  let peakKb = 0
  const sample = () => {
    const rss = readStatusKb(pid, "VmRSS")
    const hwm = readStatusKb(pid, "VmHWM")
    peakKb = Math.max(peakKb, rss ?? 0, hwm ?? 0)
  }
  sample()
  const timer = setInterval(sample, everyMs)
  timer.unref()
  return {
    peakRssBytes: () => {
      sample()
      return peakKb * 1024
    },
    cpuSeconds: () => readCpuSeconds(pid),
    stop: () => clearInterval(timer)
  }
}

/** Longest RSS series kept (an hour of samples a second). */
const RSS_SERIES_MAX = 3_600

/** VmRSS of a process in MB every `everyMs` from now (the first sample at once), until `stop` returns them. */
export const sampleRssSeries = (pid: number, everyMs = 1_000) => {
  const samples = new Float64Array(new SharedArrayBuffer(RSS_SERIES_MAX * Float64Array.BYTES_PER_ELEMENT))
  const count = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT))
  // A worker thread keeps the pace when the bench's own event loop is saturated (in an overload
  // window it was: a timer here got 9 samples in 32 s).
  const worker = new Worker(new URL("./RssSampler.ts", import.meta.url), { workerData: { pid, everyMs, samples, count } })
  worker.unref()
  return {
    stop: (): ReadonlyArray<number> => {
      void worker.terminate()
      return Array.from(samples.subarray(0, Atomics.load(count, 0)))
    }
  }
}

/**
 * utime+stime in seconds of every process whose command name (`/proc/<pid>/comm`) is `comm` and
 * whose command line `keep` accepts, by pid: Postgres's backends and background processes, or
 * RabbitMQ's `beam.smp`. The delta of two readings is what the group spent between them (a
 * process gone in between is lost; the pools' connections live through a window).
 */
export const groupCpuSeconds = (comm: string, keep: (cmdline: string) => boolean = () => true): Map<number, number> => {
  const cpu = new Map<number, number>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== comm) continue
      if (!keep(readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " "))) continue
    } catch {
      continue
    }
    const seconds = readCpuSeconds(Number(entry))
    if (seconds !== undefined) cpu.set(Number(entry), seconds)
  }
  return cpu
}

/** CPU seconds a group spent from `start` to `end` (a process new at `end` started in between). */
export const groupCpuDelta = (start: ReadonlyMap<number, number>, end: ReadonlyMap<number, number>) => {
  let total = 0
  for (const [pid, seconds] of end) total += seconds - (start.get(pid) ?? 0)
  return total
}
