/**
 * Shared pieces of the benchmark: the webhook load generator (signed bodies over keep-alive
 * HTTP at a fixed concurrency) and small formatting helpers. Plain TypeScript, no Effect.
 * The consumers that count deliveries are in Deliveries.ts, /proc statistics in Processes.ts.
 */
import { createHmac } from "node:crypto"
import http from "node:http"
import { performance } from "node:perf_hooks"

// ---------------------------------------------------------------------------------------------
// Webhook bodies

export interface BodyFactoryOptions {
  /** owner_id of every worker app, in round-robin order. */
  readonly owners: ReadonlyArray<string>
  /** Changes (events) per body, spread over min(changesPerBody, owners) entries. */
  readonly changesPerBody: number
  /** Digits that make this run's comment ids unique. */
  readonly idPrefix: string
  /** Media ids per owner (a small fixed set, so a Graph-API owner cache can hit). */
  readonly mediaPerOwner?: number
  /**
   * The media ids of each owner (index-aligned with `owners`; see `mediaIdsFor`), instead of the
   * ids made from `mediaPerOwner`. Each owner's changes cycle through its own list, so every one
   * of its media is used.
   */
  readonly media?: ReadonlyArray<ReadonlyArray<string>>
  /**
   * Written as every entry's `id` instead of the entry's owner: an account no worker app serves,
   * so only the media's owner (from the Graph API) can route the event to the right app.
   * The body's shape and size stay the same as without it (use an id of the owners' length).
   */
  readonly entryId?: string
}

export interface BodyFactory {
  /** A new body with a fresh comment id per change. */
  readonly next: () => Buffer
  readonly eventsPerBody: number
  readonly entriesPerBody: number
}

export const makeBodyFactory = (options: BodyFactoryOptions): BodyFactory => {
  const owners = options.owners
  const changes = Math.max(1, options.changesPerBody)
  const entries = Math.max(1, Math.min(changes, owners.length))
  const mediaPerOwner = Math.max(1, options.mediaPerOwner ?? 16)
  // Pre-built fragments: only the owner, time, comment id and media id vary.
  const entryHead = owners.map((owner) => `{"id":"${options.entryId ?? owner}","time":`)
  const media = options.media ?? mediaIdsFor(owners, mediaPerOwner)
  if (media.length !== owners.length || media.some((list) => list.length === 0)) {
    throw new Error("makeBodyFactory: media must hold a non-empty list per owner")
  }
  // With explicit media, a cursor per owner (one shared cursor can keep hitting the same media of
  // an owner when the owner count and the media count share a factor).
  const perOwnerCursor = options.media === undefined ? undefined : owners.map(() => 0)
  const changeHead = `{"field":"comments","value":{"id":"`
  const changeMid = `","text":"bench","from":{"id":"1","username":"u"},"media":{"id":"`
  const changeTail = `"}}}`
  let ownerCursor = 0
  let seq = 0
  let mediaCursor = 0
  let unixCache = 0
  let unixCacheAt = 0
  const next = () => {
    const now = Date.now()
    if (now - unixCacheAt >= 250) {
      unixCache = Math.floor(now / 1000)
      unixCacheAt = now
    }
    let out = `{"object":"instagram","entry":[`
    for (let e = 0; e < entries; e++) {
      const ownerIndex = (ownerCursor + e) % owners.length
      if (e > 0) out += ","
      out += entryHead[ownerIndex]! + unixCache + `,"changes":[`
      // changes e, e+entries, e+2*entries, … go to entry e
      let first = true
      for (let c = e; c < changes; c += entries) {
        if (!first) out += ","
        first = false
        const ownerMedia = media[ownerIndex]!
        const mediaId = perOwnerCursor === undefined
          ? ownerMedia[mediaCursor++ % ownerMedia.length]
          : ownerMedia[perOwnerCursor[ownerIndex]!++ % ownerMedia.length]
        out += changeHead + options.idPrefix + seq++ + changeMid + mediaId + changeTail
      }
      out += "]}"
    }
    out += "]}"
    ownerCursor = (ownerCursor + entries) % owners.length
    return Buffer.from(out)
  }
  return { next, eventsPerBody: changes, entriesPerBody: entries }
}

/** Media ids (digits only, as Meta's) of each owner: `perOwner` per owner, index-aligned with `owners`. */
export const mediaIdsFor = (owners: ReadonlyArray<string>, perOwner: number): ReadonlyArray<ReadonlyArray<string>> =>
  owners.map((owner, i) =>
    Array.from({ length: Math.max(1, perOwner) }, (_, m) => `18${String(i).padStart(4, "0")}${owner.slice(-6)}${String(m).padStart(4, "0")}`)
  )

export const sign = (secret: string, body: Buffer) =>
  "sha256=" + createHmac("sha256", secret).update(body).digest("hex")

// ---------------------------------------------------------------------------------------------
// Load generator

export interface LoadOptions {
  readonly host: string
  readonly port: number
  readonly path: string
  readonly secret: string
  readonly concurrency: number
  readonly warmupMs: number
  readonly durationMs: number
  readonly factory: BodyFactory
  /** Per-request timeout (the service promises an answer within 10 s). */
  readonly requestTimeoutMs?: number
}

export interface LoadResult {
  /** performance.now() when the measured window opened / closed. */
  readonly measureStart: number
  readonly measureEnd: number
  /** Date.now() at measureStart (for correlating with delivery arrival times). */
  readonly measureStartWall: number
  readonly loadStart: number
  readonly loadStartWall: number
  /** Requests started in the measured window. */
  readonly measuredRequests: number
  readonly measuredOk: number
  /** Non-200 outcomes in the measured window, by status code or error code. */
  readonly measuredFailures: Map<string, number>
  /** Non-200 outcomes in the warm-up. */
  readonly warmupFailures: Map<string, number>
  /** 200s over the whole run (warm-up included): every event in them must be delivered. */
  readonly totalOk: number
  readonly totalRequests: number
  /** Accept latency (ms) of the measured 200s. */
  readonly okLatencies: Float64Array
  /** Latency (ms) of every measured response, whatever its status. */
  readonly allLatencies: Float64Array
  /** CPU time of the bench process itself during the measured window (µs). */
  readonly benchCpuMicros: number
}

/** A growable array of numbers (latencies, arrival times). */
export class Samples {
  private buf = new Float64Array(1 << 16)
  private n = 0
  push(value: number) {
    if (this.n === this.buf.length) {
      const bigger = new Float64Array(this.buf.length * 2)
      bigger.set(this.buf)
      this.buf = bigger
    }
    this.buf[this.n++] = value
  }
  get length() {
    return this.n
  }
  values() {
    return this.buf.slice(0, this.n)
  }
}

export const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)

/** What one request got: its status, or the error code when no answer came; and whether the answer had a Retry-After. */
export interface Answer {
  readonly outcome: number | string
  readonly retryAfter: boolean
}

export const postOnce = (agent: http.Agent, options: LoadOptions, body: Buffer, signature: string) =>
  new Promise<Answer>((resolve) => {
    let settled = false
    let retryAfter = false
    const done = (outcome: number | string) => {
      if (!settled) {
        settled = true
        resolve({ outcome, retryAfter })
      }
    }
    const req = http.request(
      {
        agent,
        host: options.host,
        port: options.port,
        path: options.path,
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": body.length,
          "x-hub-signature-256": signature
        }
      },
      (res) => {
        const status = res.statusCode ?? 0
        retryAfter = res.headers["retry-after"] !== undefined
        res.on("error", () => done("response-error"))
        res.on("end", () => done(status))
        res.resume()
      }
    )
    req.on("error", (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
    req.setTimeout(options.requestTimeoutMs ?? 15_000, () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })))
    req.end(body)
  })

/**
 * The clock and the tally of one load run, shared by the closed loop (runLoad) and the paced one
 * (PacedLoad.ts): the window's bounds, the bench's CPU over it, and what each request got.
 * `at` is the instant a request counts from: when it was sent (closed loop) or when it was due (paced).
 */
export const openTally = (warmupMs: number, durationMs: number) => {
  const loadStart = performance.now()
  const loadStartWall = Date.now()
  const measureStart = loadStart + warmupMs
  const measureEnd = measureStart + durationMs
  let measureStartWall = 0
  let cpuAtStart: NodeJS.CpuUsage | undefined
  let cpuAtEnd: NodeJS.CpuUsage | undefined
  const startTimer = setTimeout(() => {
    measureStartWall = Date.now()
    cpuAtStart = process.cpuUsage()
  }, warmupMs)
  const endTimer = setTimeout(() => (cpuAtEnd = process.cpuUsage()), warmupMs + durationMs)

  let measuredRequests = 0
  let measuredOk = 0
  let totalOk = 0
  let totalRequests = 0
  const measuredFailures = new Map<string, number>()
  const warmupFailures = new Map<string, number>()
  const okLatencies = new Samples()
  const allLatencies = new Samples()

  const record = (at: number, outcome: number | string) => {
    const elapsed = performance.now() - at
    totalRequests++
    const measured = at >= measureStart
    if (outcome === 200) {
      totalOk++
      if (measured) {
        measuredOk++
        okLatencies.push(elapsed)
      }
    } else {
      bump(measured ? measuredFailures : warmupFailures, String(outcome))
    }
    if (measured) {
      measuredRequests++
      allLatencies.push(elapsed)
    }
  }
  const finish = (): LoadResult => {
    clearTimeout(startTimer)
    clearTimeout(endTimer)
    const start = cpuAtStart ?? process.cpuUsage()
    const end = cpuAtEnd ?? process.cpuUsage()
    return {
      loadStart,
      loadStartWall,
      measureStart,
      measureEnd,
      measureStartWall: measureStartWall || loadStartWall + warmupMs,
      measuredRequests,
      measuredOk,
      measuredFailures,
      warmupFailures,
      totalOk,
      totalRequests,
      okLatencies: okLatencies.values(),
      allLatencies: allLatencies.values(),
      benchCpuMicros: end.user + end.system - start.user - start.system
    }
  }
  return { loadStart, measureStart, measureEnd, record, finish }
}

export const keepAliveAgent = (connections: number) => new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections })

export const runLoad = async (options: LoadOptions): Promise<LoadResult> => {
  const agent = keepAliveAgent(options.concurrency)
  const tally = openTally(options.warmupMs, options.durationMs)
  const worker = async () => {
    for (;;) {
      const t0 = performance.now()
      if (t0 >= tally.measureEnd) return
      const body = options.factory.next()
      const { outcome } = await postOnce(agent, options, body, sign(options.secret, body))
      tally.record(t0, outcome)
      // Don't spin when the target refuses connections outright.
      if (typeof outcome === "string") await new Promise((r) => setTimeout(r, 5))
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, worker))
  agent.destroy()
  return tally.finish()
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** Nearest-rank percentile of unsorted samples (sorts a copy). */
export const percentile = (samples: Float64Array, q: number): number | undefined => {
  if (samples.length === 0) return undefined
  const sorted = samples.slice().sort()
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]
}

export const percentiles = (samples: Float64Array, qs: ReadonlyArray<number>) => {
  if (samples.length === 0) return qs.map(() => undefined)
  const sorted = samples.slice().sort()
  return qs.map((q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))])
}

/** A progress line of the bench. */
export const log = (line: string) => console.log(`[bench] ${line}`)

export const fmt = (value: number | undefined, digits = 0) =>
  value === undefined || !Number.isFinite(value) ? "-" : value.toFixed(digits)

export const formatCounts = (counts: Map<string, number>) =>
  counts.size === 0 ? "0" : [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(" ")

export const renderTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}
