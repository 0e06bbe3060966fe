/** The report: one table row per measured window, the notes, and the verdicts of the comparisons. */
import { fmt, formatCounts, percentiles, renderTable } from "./load.ts"
import type { PhaseResult } from "./Measure.ts"
import { pacedReport } from "./PacedReport.ts"
import { isSideB, OWNER_RESOLUTION_BUDGET, type Settings, TRACING_BUDGET } from "./Settings.ts"

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

/** Prints the report of a run; false when a comparison failed or could not compare. */
export const printReport = (settings: Settings, results: ReadonlyArray<PhaseResult>): boolean => {
  if (results.length === 0) return true
  let ok = true
  console.log("")
  console.log(renderTable(header, results.map(row)))
  console.log("")
  for (const r of results) for (const note of r.notes) console.log(`  ${r.name}: ${note}`)
  const baseline = results.find((r) => r.name === "baseline")
  const services = results.filter((r) => r.phase !== undefined)
  // paced, both answer the schedule's rate: their ratio says nothing about capacity
  if (baseline && services.length > 0 && settings.rate === undefined && settings.overload === undefined) {
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
  if (settings.compareTracing && !compareTracingReport(settings, results)) ok = false
  if (settings.compareOwnerResolution && !compareOwnerResolutionReport(settings, results)) ok = false
  if (!pacedReport(results)) ok = false
  console.log("")
  console.log(
    "accepted = 200s of requests started in the measured window / duration; delivered ev/s = unique deliveries since the window opened / " +
      "(last delivery − window start); e2e = arrival − body received_at; CPU % = target process CPU time over the window (100 = one core); " +
      "PG / MQ µs/ev = CPU of Postgres (its background processes and the target database's backends) / of RabbitMQ (beam.smp) " +
      "per delivered event; WAL B/ev = pg_stat_wal wal_bytes written in the window (whole cluster) per delivered event; " +
      "peak RSS = VmHWM; missing = events answered 200 (warm-up included) never delivered" +
      (settings.rate !== undefined || settings.overload !== undefined
        ? "; paced (--rate, --overload): accepted counts the requests due in the window, and accept latency runs from each " +
          "request's due time (start + i/R), so a wait for a free connection counts"
        : "")
  )
  return ok
}
