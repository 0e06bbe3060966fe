/** The verdicts of --rate (accept p99 from the schedule against the goal) and --overload (answers, RSS, delivery). */
import { fmt, formatCounts, percentiles } from "./load.ts"
import type { PhaseResult } from "./Measure.ts"
import { OVERLOAD_RSS_AT_S, OVERLOAD_RSS_GROWTH, PACED_P99_GOAL_MS } from "./Settings.ts"

/** --rate: PASS when accept p99 (from the due time) is within the goal and every request due in the window was answered 200. */
const pacedVerdict = (r: PhaseResult): boolean => {
  const paced = r.paced!
  const [p99] = percentiles(r.load.okLatencies, [0.99])
  const failures = [...r.load.measuredFailures.values()].reduce((a, b) => a + b, 0)
  const problems = [
    ...(p99 === undefined ? ["no request answered 200"] : p99 > PACED_P99_GOAL_MS ? [`p99 ${fmt(p99, 1)} ms > ${PACED_P99_GOAL_MS} ms`] : []),
    ...(failures > 0 ? [`non-200 in the window: ${formatCounts(r.load.measuredFailures)}`] : []),
    ...(paced.unsent > 0 ? [`${paced.unsent} requests never sent`] : [])
  ]
  console.log(
    `${r.name} paced ${fmt(paced.rate)} req/s: answered ${fmt(r.load.measuredOk / r.durationS)} req/s 200, ` +
      `accept p99 from the schedule ${fmt(p99, 2)} ms (goal ≤ ${PACED_P99_GOAL_MS} ms): ${problems.length === 0 ? "PASS" : `FAIL (${problems.join("; ")})`}`
  )
  return problems.length === 0
}

/** "RSS flat": the largest VmRSS after OVERLOAD_RSS_AT_S within OVERLOAD_RSS_GROWTH of the VmRSS at it. */
const rssFlat = (rssMb: ReadonlyArray<number>) => {
  const at = rssMb[OVERLOAD_RSS_AT_S]
  const after = rssMb.slice(OVERLOAD_RSS_AT_S + 1)
  const max = after.length === 0 ? undefined : Math.max(...after)
  const flat = at !== undefined && max !== undefined && max <= at * (1 + OVERLOAD_RSS_GROWTH)
  return { at, max, flat }
}

/** --overload: PASS only with nothing but 200 and 503 + Retry-After, RSS flat, and every 200's events delivered. */
const overloadVerdict = (r: PhaseResult): boolean => {
  const paced = r.paced!
  const { answers } = paced
  const factor = r.overload!.factor
  const offered = paced.sentRate / r.overload!.sustainedReqPerS
  console.log(
    `${r.name} overload ${factor} × ${fmt(r.overload!.sustainedReqPerS)} req/s = ${fmt(paced.rate)} req/s for ${r.durationS} s: ` +
      `sent ${fmt(paced.sentRate)} req/s (${fmt(offered, 1)} × sustained), ${paced.unsent} unsent`
  )
  const others = [...answers.otherStatus.values()].reduce((a, b) => a + b, 0)
  const errors = [...answers.connectionErrors.values()].reduce((a, b) => a + b, 0)
  console.log(
    `  answers: 200×${answers.ok}, 503 + Retry-After×${answers.busyWithRetryAfter}, 503 without×${answers.busyWithout}, ` +
      `other status×${others}${others > 0 ? ` (${formatCounts(answers.otherStatus)})` : ""}, ` +
      `connection errors×${errors}${errors > 0 ? ` (${formatCounts(answers.connectionErrors)})` : ""}`
  )
  const rss = rssFlat(r.rssMb ?? [])
  console.log(
    `  RSS (VmRSS each second from the load's start to its last answer, MB): ${(r.rssMb ?? []).map((mb) => fmt(mb)).join(" ")}; at ${OVERLOAD_RSS_AT_S} s ${fmt(rss.at)}, ` +
      `max after ${fmt(rss.max)}: ${rss.flat ? "flat" : "NOT flat"} (limit +${OVERLOAD_RSS_GROWTH * 100} %)`
  )
  const missing = Math.max(0, r.expectedEvents - r.delivered)
  console.log(`  delivery: ${missing === 0 ? `every one of the ${r.expectedEvents} events answered 200 delivered` : `${missing} of ${r.expectedEvents} events answered 200 missing`}`)
  const problems = [
    ...(answers.busyWithout > 0 ? ["503 without Retry-After"] : []),
    ...(others > 0 ? ["other statuses"] : []),
    ...(errors > 0 ? ["connection errors"] : []),
    ...(rss.flat ? [] : ["RSS not flat"]),
    ...(missing > 0 ? ["events missing"] : [])
  ]
  console.log(`${r.name} overload: ${problems.length === 0 ? "PASS" : `FAIL (${problems.join("; ")})`}`)
  if (offered < factor * 0.9) {
    console.log(
      `  WARNING: the bench sent only ${fmt(offered, 1)} × the sustained rate, not ${factor} ×: ` +
        (paced.waitedForConnection > 0
          ? `${paced.waitedForConnection} requests waited for one of the ${paced.connections} connections (the target held them rather than refusing)`
          : `the bench's event loop could not keep to the schedule`)
    )
  }
  return problems.length === 0
}

/** Prints the verdict of each paced window; false when one failed. */
export const pacedReport = (results: ReadonlyArray<PhaseResult>): boolean => {
  let ok = true
  const paced = results.filter((r) => r.paced !== undefined)
  if (paced.length > 0) console.log("")
  for (const r of paced) if (!(r.overload === undefined ? pacedVerdict(r) : overloadVerdict(r))) ok = false
  return ok
}
