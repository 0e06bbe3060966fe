/**
 * `npm run bench`: drives signed Instagram webhooks at the real service (src/main.ts in a child
 * process, its own database and queues) and at a minimal baseline (bench/baseline.ts: verify,
 * parse, publish with confirm, no database), counts what reaches the worker-app queues, and
 * prints one table row per target plus the service/baseline ratio of delivered events/s.
 * `--help` lists the flags; README.md (Performance) says what the figures mean.
 *
 * The same settings can come from BENCH_DURATION, BENCH_WARMUP, BENCH_CONCURRENCY, BENCH_APPS,
 * BENCH_CHANGES_PER_BODY, BENCH_MEDIA_PER_APP, BENCH_ROUNDS (flags win). The service's own
 * settings (OWNER_RESOLUTION, QUEUE_TYPE, OTEL_*, GRAPH_*, RATE_LIMIT_*, …; ServicePhases.ts lists
 * them) are passed through; BENCH_SERVICE_NODE_FLAGS adds Node flags to it (e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof`) and BENCH_SERVICE_ROOT runs another checkout's service.
 *
 * Exit code 1 when a phase failed or a comparison says FAIL or NOT COMPARABLE, 2 on bad arguments.
 */
import { randomBytes } from "node:crypto"
import { runBaselinePhase } from "./BaselinePhase.ts"
import { isInterrupted, runCleanups } from "./Cleanup.ts"
import { log } from "./load.ts"
import { makeWorkload, type PhaseResult } from "./Measure.ts"
import { printReport } from "./Report.ts"
import { runServicePhase, runSideBySide } from "./ServicePhases.ts"
import { parseSettings, printSettings } from "./Settings.ts"

const settings = parseSettings(process.argv.slice(2))
printSettings(settings)
const runId = randomBytes(4).toString("hex")
const workload = makeWorkload(settings)
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
  } else {
    for (const phase of settings.servicePhases) {
      if (isInterrupted()) break
      try {
        results.push(await runServicePhase(settings, runId, workload, phase))
      } catch {
        failed = true
      }
    }
  }
  await runCleanups() // stop the services, delete their queues, drop their databases before the baseline runs
  if (settings.runBaseline && !isInterrupted()) {
    try {
      results.push(await runBaselinePhase(settings, runId, workload))
    } catch {
      failed = true
    }
  }
} finally {
  await runCleanups()
}
if (!printReport(settings, results)) failed = true
process.exitCode = failed ? 1 : 0
