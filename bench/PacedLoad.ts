/**
 * Open-loop load (--rate, --overload): request i is due at the load's start + i / rate, whatever
 * the target answers. It goes out on a free connection of a bounded pool and, when every
 * connection is busy, waits for one. Latency counts from the due time, so a slow answer that
 * holds later requests back shows in their latency too (no coordinated omission).
 */
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import { bump, keepAliveAgent, type LoadOptions, type LoadResult, openTally, postOnce, sign } from "./load.ts"

/** Connections of the pool under --rate unless --connections says otherwise. */
export const PACED_CONNECTIONS = 256
/** Under --overload: above the service's journal mailbox (2048 waiting requests), so the service, not the pool, decides what waits. */
export const OVERLOAD_CONNECTIONS = 4096
/** After the window closes, requests still waiting for a connection get this long to go out; the rest count as unsent. */
export const PACED_DRAIN_MS = 2_000
/** A request sent later than this after its due time is late (Node's timers fire on whole milliseconds). */
const LATE_MS = 1

export interface PacedOptions extends LoadOptions {
  /** Requests per second on the schedule; `concurrency` is the pool's bound. */
  readonly rate: number
}

/** What the requests of the whole run (warm-up included) got, by kind. */
export interface PacedAnswers {
  readonly ok: number
  readonly busyWithRetryAfter: number
  readonly busyWithout: number
  /** Any other status, by status. */
  readonly otherStatus: Map<string, number>
  /** No answer (refused, reset, timed out), by error code. */
  readonly connectionErrors: Map<string, number>
}

export interface PacedResult extends LoadResult {
  readonly rate: number
  readonly connections: number
  /** Requests due in the run (warm-up included). */
  readonly due: number
  /** Requests due before the window closed that had not gone out when the drain ended. */
  readonly unsent: number
  /** Requests already overdue by more than LATE_MS when a connection came free for them: they waited for one. */
  readonly waitedForConnection: number
  /** Requests that went out more than LATE_MS after their due time (those that waited for a connection included). */
  readonly late: number
  /** Requests sent in the measured window, per second. */
  readonly sentRate: number
  readonly answers: PacedAnswers
}

export const runPacedLoad = async (options: PacedOptions): Promise<PacedResult> => {
  const agent = keepAliveAgent(options.concurrency)
  const tally = openTally(options.warmupMs, options.durationMs)
  const interval = 1000 / options.rate
  const due = Math.ceil((tally.measureEnd - tally.loadStart) / interval)
  const drainEnd = tally.measureEnd + PACED_DRAIN_MS
  const answers = { ok: 0, busyWithRetryAfter: 0, busyWithout: 0, otherStatus: new Map<string, number>(), connectionErrors: new Map<string, number>() }
  let next = 0
  let sent = 0
  let sentInWindow = 0
  let late = 0
  let waitedForConnection = 0
  let drained = false
  // One loop per connection of the pool: each takes the next request due, so at most `concurrency` are in flight.
  const connection = async () => {
    while (!drained && next < due) {
      const at = tally.loadStart + next++ * interval
      const wait = at - performance.now()
      if (wait > 0) await sleep(wait)
      else if (-wait > LATE_MS) waitedForConnection++
      const now = performance.now()
      if (now >= drainEnd) {
        drained = true
        return
      }
      if (now - at > LATE_MS) late++
      sent++
      if (now >= tally.measureStart && now < tally.measureEnd) sentInWindow++
      const body = options.factory.next()
      const { outcome, retryAfter } = await postOnce(agent, options, body, sign(options.secret, body))
      tally.record(at, outcome)
      if (outcome === 200) answers.ok++
      else if (outcome === 503 && retryAfter) answers.busyWithRetryAfter++
      else if (outcome === 503) answers.busyWithout++
      else if (typeof outcome === "number") bump(answers.otherStatus, String(outcome))
      else bump(answers.connectionErrors, outcome)
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, connection))
  agent.destroy()
  return {
    ...tally.finish(),
    rate: options.rate,
    connections: options.concurrency,
    due,
    unsent: due - sent,
    late,
    waitedForConnection,
    sentRate: sentInWindow / (options.durationMs / 1000),
    answers
  }
}
