/** /proc/<pid>/status fields, for the bench's process figures and its RSS sampler thread. */
import { readFileSync } from "node:fs"

/** A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM, …), undefined once the process is gone. */
export const readStatusKb = (pid: number, key: string): number | undefined => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const match = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, "m").exec(status)
    return match ? Number(match[1]) : undefined
  } catch {
    return undefined
  }
}
