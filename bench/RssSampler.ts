/** Worker thread of `sampleRssSeries`: VmRSS of `pid` in MB every `everyMs` into shared memory. */
import { workerData } from "node:worker_threads"
import { readStatusKb } from "./ProcStatus.ts"

const { pid, everyMs, samples, count } = workerData as {
  readonly pid: number
  readonly everyMs: number
  readonly samples: Float64Array
  readonly count: Int32Array
}

const sample = () => {
  const i = Atomics.load(count, 0)
  if (i >= samples.length) return
  samples[i] = (readStatusKb(pid, "VmRSS") ?? Number.NaN) / 1024
  Atomics.store(count, 0, i + 1)
}
sample()
setInterval(sample, everyMs)
