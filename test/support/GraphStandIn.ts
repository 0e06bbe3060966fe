import { Context, Effect, Layer } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { performance } from "node:perf_hooks"

/** The access token and app secret tests configure; neither may ever show up in a log line. */
export const GRAPH_TOKEN = "IGQVJ-test-access-token-5f3a9c1e77d04b2a"

/** One answer of the stand-in. */
export interface Reply {
  readonly status?: number
  /** Sent as JSON. */
  readonly body?: unknown
  /** Sent as it is (instead of `body`). */
  readonly rawBody?: string
  readonly headers?: Readonly<Record<string, string>>
  /** Never answer (the connection is dropped when the stand-in closes). */
  readonly hang?: boolean
  /** Answer only after this long. */
  readonly delayMs?: number
}

/** One request the stand-in received. */
export interface GraphCall {
  /** `performance.now()` when it arrived. */
  readonly at: number
  readonly mediaId: string
  readonly path: string
  readonly params: Readonly<Record<string, string>>
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

/** Answers shaped like Meta's. */
export const replies = {
  owner: (ownerId: string, username = "owner_account"): Reply => ({ body: { owner: { id: ownerId }, username } }),
  /** What Meta returns when the token's user did not create the media. */
  usernameOnly: (username = "someone_else"): Reply => ({ body: { username } }),
  error: (
    code: number,
    options: { readonly status?: number; readonly subcode?: number; readonly message?: string; readonly headers?: Readonly<Record<string, string>> } = {}
  ): Reply => ({
    status: options.status ?? (code === 1 || code === 2 ? 500 : 400),
    body: {
      error: {
        message: options.message ?? `stand-in error ${code}`,
        type: "OAuthException",
        code,
        ...(options.subcode === undefined ? {} : { error_subcode: options.subcode }),
        fbtrace_id: "AbCdEf123"
      }
    },
    ...(options.headers === undefined ? {} : { headers: options.headers })
  }),
  /** A bare HTTP 500, the way a proxy in front of Meta answers. */
  serverError: (): Reply => ({ status: 500, rawBody: "Internal Server Error", headers: { "content-type": "text/plain" } }),
  hang: (): Reply => ({ hang: true }),
  later: (delayMs: number, reply: Reply): Reply => ({ ...reply, delayMs })
}

/** `X-App-Usage` at this percentage (every counter). */
export const appUsage = (percent: number): Record<string, string> => ({
  "x-app-usage": JSON.stringify({ call_count: percent, total_cputime: Math.floor(percent / 2), total_time: Math.floor(percent / 3) })
})

/** `X-Business-Use-Case-Usage` at this percentage, with Meta's regain estimate in minutes. */
export const businessUsage = (percent: number, regainMinutes = 0): Record<string, string> => ({
  "x-business-use-case-usage": JSON.stringify({
    "17841400000000001": [{
      type: "instagram",
      call_count: percent,
      total_cputime: 1,
      total_time: 1,
      estimated_time_to_regain_access: regainMinutes
    }]
  })
})

/**
 * A stand-in for the Graph API on loopback: `GET /v25.0/{media-id}`, answered
 * from a script per media (each call takes the next reply; the last one
 * repeats), else from `fallback`. Every call is recorded.
 */
export class GraphStandIn extends Context.Service<GraphStandIn, {
  /** The `GRAPH_API_URL` to configure. */
  readonly url: string
  readonly calls: ReadonlyArray<GraphCall>
  callsFor(mediaId: string): ReadonlyArray<GraphCall>
  /** The replies for a media, in order; the last one repeats. */
  script(mediaId: string, ...replies: ReadonlyArray<Reply>): void
  /** The reply to a media without a script. */
  setFallback(reply: (mediaId: string, call: GraphCall) => Reply): void
  /** Headers added to every reply (usage reports). */
  setCommonHeaders(headers: Readonly<Record<string, string>>): void
}>()("test/GraphStandIn") {
  /** `keepAliveTimeoutMs`: how long an idle connection stays open (node:http's default otherwise). */
  static readonly makeWith = (options: { readonly keepAliveTimeoutMs?: number } = {}) => Effect.gen(function*() {
    const calls: Array<GraphCall> = []
    const scripts = new Map<string, Array<Reply>>()
    const hanging = new Set<ServerResponse>()
    let fallback: (mediaId: string, call: GraphCall) => Reply = () => replies.error(100, { message: "Unsupported get request." })
    let common: Readonly<Record<string, string>> = {}

    const handle = (request: IncomingMessage, response: ServerResponse) => {
      const url = new URL(request.url ?? "/", "http://stand-in")
      const match = /^\/v[0-9.]+\/([^/]+)$/.exec(url.pathname)
      if (request.method !== "GET" || match === null) {
        response.writeHead(404, { "content-type": "application/json" })
        response.end(JSON.stringify({ error: { message: "Unknown path", code: 803 } }))
        return
      }
      const mediaId = decodeURIComponent(match[1] ?? "")
      const call: GraphCall = {
        at: performance.now(),
        mediaId,
        path: url.pathname,
        params: Object.fromEntries(url.searchParams),
        headers: { ...request.headers }
      }
      calls.push(call)
      const script = scripts.get(mediaId)
      const reply = script === undefined
        ? fallback(mediaId, call)
        : (script.length > 1 ? script.shift() : script[0]) ?? fallback(mediaId, call)
      if (reply.hang === true) {
        hanging.add(response)
        response.on("close", () => hanging.delete(response))
        return
      }
      const body = reply.rawBody ?? JSON.stringify(reply.body ?? {})
      const answer = () => {
        if (response.destroyed) return
        response.writeHead(reply.status ?? 200, { "content-type": "application/json", ...common, ...reply.headers })
        response.end(body)
      }
      if (reply.delayMs === undefined) return answer()
      hanging.add(response)
      response.on("close", () => hanging.delete(response))
      setTimeout(answer, reply.delayMs)
    }

    const server = createServer(options.keepAliveTimeoutMs === undefined ? {} : { keepAliveTimeout: options.keepAliveTimeoutMs }, handle)
    const port = yield* Effect.acquireRelease(
      Effect.promise(() =>
        new Promise<number>((resolve, reject) => {
          server.once("error", reject)
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            resolve(typeof address === "object" && address !== null ? address.port : 0)
          })
        })
      ),
      () =>
        Effect.promise(() =>
          new Promise<void>((resolve) => {
            for (const response of hanging) response.destroy()
            server.closeAllConnections()
            server.close(() => resolve())
          })
        )
    )

    return GraphStandIn.of({
      url: `http://127.0.0.1:${port}/v25.0`,
      calls,
      callsFor: (mediaId) => calls.filter((call) => call.mediaId === mediaId),
      script: (mediaId, ...list) => {
        scripts.set(mediaId, [...list])
      },
      setFallback: (reply) => {
        fallback = reply
      },
      setCommonHeaders: (headers) => {
        common = headers
      }
    })
  })

  static readonly make = this.makeWith()

  static readonly layer = Layer.effect(GraphStandIn, this.make)
}
