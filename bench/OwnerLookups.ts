/**
 * The Graph API stand-in as `--graph-standin` runs it: owner lookups answered from the bench's
 * media → owner map, token and appsecret_proof checked, the calls counted per window.
 */
import { createHmac } from "node:crypto"
import http from "node:http"
import { performance } from "node:perf_hooks"
import { freePort } from "../test/support/ServiceProcess.ts"
import type { LoadResult } from "./load.ts"

export interface OwnerLookups {
  /** The GRAPH_API_URL to give the service. */
  readonly url: string
  /** performance.now() of each `GET /v25.0/{media-id}`, with its media id. */
  readonly calls: () => ReadonlyArray<{ readonly at: number; readonly mediaId: string }>
  /** Calls with a wrong access_token or appsecret_proof (answered code 190). */
  readonly badAuth: () => number
  /** Calls for a media the bench did not make (answered code 100). */
  readonly unknownMedia: () => number
  /** Requests to any other path or method (answered 404). */
  readonly rejected: () => number
  readonly close: () => Promise<void>
}

const GRAPH_VERSION = "v25.0"

/**
 * `GET /v25.0/{media-id}?fields=owner,username&access_token=…&appsecret_proof=…` on a free
 * loopback port, answered `{"owner":{"id":"<owner>"},"username":"u"}` from `owners`; a wrong
 * token or proof gets Meta's code 190, an unknown media code 100. Every call is counted.
 */
export const startOwnerLookups = async (owners: ReadonlyMap<string, string>, token: string, appSecret: string): Promise<OwnerLookups> => {
  const proof = createHmac("sha256", appSecret).update(token).digest("hex")
  const calls: Array<{ at: number; mediaId: string }> = []
  let badAuth = 0
  let unknownMedia = 0
  let rejected = 0
  const answer = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body)
    res.writeHead(status, { "content-type": "application/json; charset=UTF-8", "content-length": Buffer.byteLength(text) }).end(text)
  }
  const path = new RegExp(`^/${GRAPH_VERSION.replace(".", "\\.")}/([0-9]+)$`)
  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    req.resume()
    const url = new URL(req.url ?? "/", "http://stand-in")
    const match = path.exec(url.pathname)
    if (req.method !== "GET" || match === null) {
      rejected++
      return answer(res, 404, { error: { message: "Unknown path components", type: "OAuthException", code: 2500 } })
    }
    const mediaId = match[1]!
    calls.push({ at: performance.now(), mediaId })
    if (url.searchParams.get("access_token") !== token || url.searchParams.get("appsecret_proof") !== proof) {
      badAuth++
      return answer(res, 400, { error: { message: "Invalid OAuth access token.", type: "OAuthException", code: 190 } })
    }
    const owner = owners.get(mediaId)
    if (owner === undefined) {
      unknownMedia++
      return answer(res, 400, { error: { message: "Unsupported get request.", type: "GraphMethodException", code: 100 } })
    }
    answer(res, 200, { owner: { id: owner }, username: "u" })
  })
  const port = await freePort()
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => resolve())
  })
  return {
    url: `http://127.0.0.1:${port}/${GRAPH_VERSION}`,
    calls: () => calls,
    badAuth: () => badAuth,
    unknownMedia: () => unknownMedia,
    rejected: () => rejected,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
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
  const calls = standIn.calls()
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
  const calls = standIn.calls()
  const last = calls.length === 0 ? undefined : calls[calls.length - 1]!.at
  const notes = [
    `Graph API stand-in (${standIn.url}): ${figures.calls} calls for ${figures.mediaAsked} distinct media of the ${figures.mediaInBodies} in the bodies ` +
      `(${figures.calls - figures.mediaAsked} repeated); ${figures.inWarmup} in the warm-up, ${figures.inWindow} in the measured window, ` +
      `${figures.afterWindow} after it` +
      (last === undefined ? "" : `; last call ${((last - load.loadStart) / 1000).toFixed(2)} s after the load started`) +
      (figures.badAuth === 0 ? "; access_token and appsecret_proof right on every call" : "") +
      (standIn.rejected() > 0 ? `; ${standIn.rejected()} requests to other paths rejected` : "")
  ]
  if (figures.badAuth > 0) notes.push(`${figures.badAuth} Graph API calls with a wrong access_token or appsecret_proof (answered code 190)`)
  if (figures.unknownMedia > 0) notes.push(`${figures.unknownMedia} Graph API calls for media the bench did not make (answered code 100)`)
  if (figures.calls === 0) notes.push(`the Graph API stand-in was NEVER ASKED: this run did not measure owner resolution through Meta`)
  return notes
}
