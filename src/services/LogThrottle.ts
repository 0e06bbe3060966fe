import { Effect } from "effect"

/**
 * At most one line per key per interval, so an outage or a flood does not
 * flood the log: the next line says how many were left out in between.
 */
export const throttledLog = (intervalMs: number) => {
  const last = new Map<string, { at: number; suppressed: number }>()
  return (key: string, line: (suppressed: number) => Effect.Effect<void>): Effect.Effect<void> =>
    Effect.suspend(() => {
      const now = Date.now()
      const seen = last.get(key)
      if (seen !== undefined && now - seen.at < intervalMs) {
        seen.suppressed += 1
        return Effect.void
      }
      last.set(key, { at: now, suppressed: 0 })
      return line(seen?.suppressed ?? 0)
    })
}
