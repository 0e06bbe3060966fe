/** What a run must undo (services, sinks, queues, databases), last started first; SIGINT runs it too. */
import { log } from "./load.ts"

const cleanups: Array<{ readonly what: string; readonly run: () => Promise<unknown> }> = []
export const onCleanup = (what: string, run: () => Promise<unknown>) => cleanups.push({ what, run })
export const runCleanups = async () => {
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
/** Ctrl-C was pressed: start no further phase or window. */
export const isInterrupted = () => interrupted
process.on("SIGINT", () => {
  if (interrupted) process.exit(130)
  interrupted = true
  log("interrupted: cleaning up (Ctrl-C again to quit at once)")
  runCleanups().finally(() => process.exit(130))
})
