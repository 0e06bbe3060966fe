import { Effect } from "effect"

/** Keys a throttled log remembers; past this the longest-quiet key is forgotten (its next line is logged). */
export const LOG_THROTTLE_MAX_KEYS = 10_000

/**
 * At most one line per key per interval, so an outage or a flood does not
 * flood the log: the next line says how many were left out in between.
 */
export const throttledLog = (intervalMs: number) => {
  const last = new Map<string, { at: number; suppressed: number }>()
  return (key: string, line: (suppressed: number) => Effect.Effect<void>): Effect.Effect<void> =>
    Effect.clockWith((clock) => {
      const now = clock.currentTimeMillisUnsafe()
      const seen = last.get(key)
      if (seen !== undefined && now - seen.at < intervalMs) {
        seen.suppressed += 1
        return Effect.void
      }
      // Re-inserted, so the map's order is the order of the last line logged per key.
      last.delete(key)
      if (last.size >= LOG_THROTTLE_MAX_KEYS) last.delete(last.keys().next().value!)
      last.set(key, { at: now, suppressed: 0 })
      return line(seen?.suppressed ?? 0)
    })
}
