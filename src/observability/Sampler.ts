/** Sampling (OTEL_TRACES_SAMPLER, as the OpenTelemetry SDKs read it). */

export type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio"

export const SAMPLERS: ReadonlyArray<SamplerName> = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio"
]

const INVALID_TRACE_ID = "00000000000000000000000000000000"

/**
 * The SDK's `TraceIdRatioBasedSampler` test: the trace id's 32-bit words
 * xor-ed, below ratio × (2³² − 1) (every valid id at ratio 1, none at 0).
 */
const ratioSampled = (traceId: string, ratio: number) => {
  if (traceId === INVALID_TRACE_ID) return false
  const upperBound = ratio === 1 ? 0x100000000 : Math.floor(ratio * 0xffffffff)
  let accumulation = 0
  for (let i = 0; i < traceId.length / 8; i++) {
    const part = Number.parseInt(traceId.slice(i * 8, i * 8 + 8), 16)
    accumulation = (accumulation ^ part) >>> 0
  }
  return accumulation < upperBound
}

/**
 * A span's sampling decision. `effectSampled` is effect's own: false under an
 * unsampled parent (or below the minimum trace level).
 */
export const makeSampler = (name: SamplerName, ratio: number) => {
  const root = (traceId: string, effectSampled: boolean) => {
    if (name === "always_off" || name === "parentbased_always_off") return false
    if (name === "traceidratio" || name === "parentbased_traceidratio") return effectSampled && ratioSampled(traceId, ratio)
    return effectSampled
  }
  if (name.startsWith("parentbased_")) {
    return (hasParent: boolean, traceId: string, effectSampled: boolean) => hasParent ? effectSampled : root(traceId, effectSampled)
  }
  return (_hasParent: boolean, traceId: string, effectSampled: boolean) => root(traceId, effectSampled)
}
