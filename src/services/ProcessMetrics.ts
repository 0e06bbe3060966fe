import { Effect, Layer, Metric } from "effect"
import { monitorEventLoopDelay } from "node:perf_hooks"

/** Prometheus' standard Node process metrics under their usual names, read at scrape time. */

const cpuSeconds = Metric.counter("process_cpu_seconds_total", {
  description: "User and system CPU time spent, in seconds",
  incremental: true
})
const residentMemory = Metric.gauge("process_resident_memory_bytes", { description: "Resident memory size in bytes" })
const startTime = Metric.gauge("process_start_time_seconds", {
  description: "Start time of the process since the Unix epoch, in seconds"
})
const heapUsed = Metric.gauge("nodejs_heap_size_used_bytes", { description: "V8 heap in use, in bytes" })
const heapTotal = Metric.gauge("nodejs_heap_size_total_bytes", { description: "V8 heap allocated, in bytes" })
const externalMemory = Metric.gauge("nodejs_external_memory_bytes", { description: "Memory of C++ objects bound to JavaScript, in bytes" })
const loopLag = Metric.gauge("nodejs_eventloop_lag_seconds", {
  description: "Mean event-loop delay since the previous scrape, in seconds"
})
const loopLagP99 = Metric.gauge("nodejs_eventloop_lag_p99_seconds", {
  description: "99th percentile of the event-loop delay since the previous scrape, in seconds"
})

/** Sampling resolution of the event-loop delay histogram. */
const LOOP_DELAY_RESOLUTION_MS = 20
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })

/** Samples the event-loop delay while the service runs; stopped on shutdown, since its timer would keep the process alive. */
export const EventLoopSampler = Layer.effectDiscard(
  Effect.acquireRelease(Effect.sync(() => loopDelay.enable()), () => Effect.sync(() => loopDelay.disable()))
)
const started = (Date.now() - performance.now()) / 1000
let cpuCounted = 0

/** Brings the process metrics up to date; called before each scrape. */
export const refreshProcessMetrics = Effect.suspend(() => {
  const usage = process.cpuUsage()
  const cpu = (usage.user + usage.system) / 1e6
  const delta = Math.max(0, cpu - cpuCounted)
  cpuCounted = cpu
  const memory = process.memoryUsage()
  // The histogram is NaN before its first sample.
  const mean = Number.isFinite(loopDelay.mean) ? loopDelay.mean / 1e9 : 0
  const p99 = loopDelay.count > 0 ? loopDelay.percentile(99) / 1e9 : 0
  loopDelay.reset()
  return Effect.all([
    Metric.update(cpuSeconds, delta),
    Metric.update(residentMemory, memory.rss),
    Metric.update(startTime, started),
    Metric.update(heapUsed, memory.heapUsed),
    Metric.update(heapTotal, memory.heapTotal),
    Metric.update(externalMemory, memory.external),
    Metric.update(loopLag, mean),
    Metric.update(loopLagP99, p99)
  ], { discard: true })
})
