/**
 * The Graph API stand-in as `--graph-standin` runs it: owner lookups answered from the bench's
 * media → owner map, token and appsecret_proof checked, the calls counted per window.
 */
import { Effect, Exit, Scope } from "effect"
import { createHmac } from "node:crypto"
import { type GraphCall, GraphStandIn, replies } from "../test/support/GraphStandIn.ts"
import type { LoadResult } from "./load.ts"

export interface OwnerLookups {
  /** The GRAPH_API_URL to give the service. */
  readonly url: string
  readonly calls: ReadonlyArray<GraphCall>
  /** Calls with a wrong access_token or appsecret_proof (answered code 190). */
  readonly badAuth: () => number
  /** Calls for a media the bench did not make (answered code 100). */
  readonly unknownMedia: () => number
  readonly close: () => Promise<void>
}

/**
 * `GET /v25.0/{media-id}` on a free loopback port, answered `{"owner":{"id":"<owner>"},"username":"u"}`
 * from `owners`; a wrong token or proof gets Meta's code 190, an unknown media code 100.
 */
export const startOwnerLookups = async (owners: ReadonlyMap<string, string>, token: string, appSecret: string): Promise<OwnerLookups> => {
  const proof = createHmac("sha256", appSecret).update(token).digest("hex")
  let badAuth = 0
  let unknownMedia = 0
  const scope = Effect.runSync(Scope.make())
  // idle connections stay open between lookups, so the service's client reuses them
  const standIn = await Effect.runPromise(Scope.provide(GraphStandIn.makeWith({ keepAliveTimeoutMs: 65_000 }), scope))
  standIn.setFallback((mediaId, call) => {
    if (call.params.access_token !== token || call.params.appsecret_proof !== proof) {
      badAuth++
      return replies.error(190, { message: "Invalid OAuth access token." })
    }
    const owner = owners.get(mediaId)
    if (owner === undefined) {
      unknownMedia++
      return replies.error(100, { message: "Unsupported get request." })
    }
    return replies.owner(owner, "u")
  })
  return {
    url: standIn.url,
    calls: standIn.calls,
    badAuth: () => badAuth,
    unknownMedia: () => unknownMedia,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

export interface GraphFigures {
  readonly calls: number
  /** Distinct media asked about. */
  readonly mediaAsked: number
  /** Distinct media in the bodies. */
  readonly mediaInBodies: number
  readonly inWarmup: number
  readonly inWindow: number
  readonly afterWindow: number
  readonly badAuth: number
  readonly unknownMedia: number
}

export const graphFigures = (standIn: OwnerLookups, load: LoadResult, mediaInBodies: number): GraphFigures => {
  const calls = standIn.calls
  return {
    calls: calls.length,
    mediaAsked: new Set(calls.map((c) => c.mediaId)).size,
    mediaInBodies,
    inWarmup: calls.filter((c) => c.at < load.measureStart).length,
    inWindow: calls.filter((c) => c.at >= load.measureStart && c.at < load.measureEnd).length,
    afterWindow: calls.filter((c) => c.at >= load.measureEnd).length,
    badAuth: standIn.badAuth(),
    unknownMedia: standIn.unknownMedia()
  }
}

export const graphNotes = (standIn: OwnerLookups, figures: GraphFigures, load: LoadResult) => {
  const calls = standIn.calls
  const last = calls.length === 0 ? undefined : calls[calls.length - 1]!.at
  const notes = [
    `Graph API stand-in (${standIn.url}): ${figures.calls} calls for ${figures.mediaAsked} distinct media of the ${figures.mediaInBodies} in the bodies ` +
      `(${figures.calls - figures.mediaAsked} repeated); ${figures.inWarmup} in the warm-up, ${figures.inWindow} in the measured window, ` +
      `${figures.afterWindow} after it` +
      (last === undefined ? "" : `; last call ${((last - load.loadStart) / 1000).toFixed(2)} s after the load started`) +
      (figures.badAuth === 0 ? "; access_token and appsecret_proof right on every call" : "")
  ]
  if (figures.badAuth > 0) notes.push(`${figures.badAuth} Graph API calls with a wrong access_token or appsecret_proof (answered code 190)`)
  if (figures.unknownMedia > 0) notes.push(`${figures.unknownMedia} Graph API calls for media the bench did not make (answered code 100)`)
  if (figures.calls === 0) notes.push(`the Graph API stand-in was NEVER ASKED: this run did not measure owner resolution through Meta`)
  return notes
}
