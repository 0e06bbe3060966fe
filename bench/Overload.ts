/** What a target is measured with: one window (closed loop or --rate), or under --overload a closed-loop window then the overload. */
import { fmt, log } from "./load.ts"
import { measurePhase, type PhaseResult } from "./Measure.ts"
import { type Settings, SUSTAIN_S } from "./Settings.ts"

type MeasureArgs = Parameters<typeof measurePhase>

export const measureTarget = async (...[name, settings, target, owners, queues, idPrefix, bodies]: MeasureArgs): Promise<PhaseResult> => {
  if (settings.overload === undefined) return measurePhase(name, settings, target, owners, queues, idPrefix, bodies, settings.rate)
  const factor = settings.overload
  // Distinct comment ids per window: the service would take the second window's events for redeliveries.
  const sustain = await measurePhase(`${name} (sustain)`, { ...settings, durationS: SUSTAIN_S }, target, owners, queues, `${idPrefix}0`, bodies)
  if (sustain.deliveredRate === undefined || sustain.deliveredRate <= 0) {
    throw new Error(`the ${SUSTAIN_S} s closed-loop window delivered nothing: no rate to overload (${sustain.notes.join("; ")})`)
  }
  const sustainedReqPerS = sustain.deliveredRate / sustain.eventsPerBody
  const rate = factor * sustainedReqPerS
  log(`${name}: sustained ${fmt(sustain.deliveredRate)} delivered ev/s (${fmt(sustainedReqPerS)} req/s); overload at ${factor} × = ${fmt(rate)} req/s`)
  const overloadSettings: Settings = { ...settings, warmupS: 0 }
  const result = await measurePhase(name, overloadSettings, target, owners, queues, `${idPrefix}1`, bodies, rate)
  result.notes.unshift(
    `overload: a ${settings.warmupS} s + ${SUSTAIN_S} s closed-loop window at C=${settings.concurrency} first delivered ${fmt(sustain.deliveredRate)} ev/s ` +
      `(${fmt(sustainedReqPerS)} req/s; accepted ${fmt(sustain.load.measuredOk / SUSTAIN_S)} req/s, ${Math.max(0, sustain.expectedEvents - sustain.delivered)} missing); ` +
      `this window is ${factor} × that, ${fmt(rate)} req/s, for ${settings.durationS} s without warm-up`
  )
  return { ...result, overload: { factor, sustainedReqPerS } }
}
