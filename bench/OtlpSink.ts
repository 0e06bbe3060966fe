/**
 * A minimal OTLP trace receiver for `--tracing`: it counts what the service exports (requests,
 * bytes, spans) and throws it away.
 */
import http from "node:http"
import http2 from "node:http2"
import type { Server } from "node:net"
import { performance } from "node:perf_hooks"
import { gunzipSync } from "node:zlib"
import { fields } from "../test/support/Otlp.ts"
import { freePort } from "../test/support/ServiceProcess.ts"
import { fmt, type LoadResult } from "./load.ts"
import type { OtlpProtocol } from "./Settings.ts"

interface SinkExport {
  /** performance.now() when the request body had been read. */
  readonly at: number
  /** Bytes on the wire (the body as sent, compressed or not). */
  readonly bytes: number
  /** Spans in the export, undefined when the body could not be read. */
  readonly spans: number | undefined
}

/** The length-delimited occurrences of `field` in a protobuf message. */
const embedded = (message: Buffer, field: number) =>
  fields(message).flatMap((f) => (f.field === field && Buffer.isBuffer(f.value) ? [f.value] : []))

/** Spans in an ExportTraceServiceRequest: resource_spans (1) → scope_spans (2) → spans (2). */
const countProtobufSpans = (message: Buffer) => {
  let spans = 0
  for (const resourceSpans of embedded(message, 1)) for (const scopeSpans of embedded(resourceSpans, 2)) spans += embedded(scopeSpans, 2).length
  return spans
}

const START_TIME = Buffer.from(`"startTimeUnixNano"`)

/** Spans in one export body (best effort: undefined when it cannot be decoded). */
const countSpans = (protocol: OtlpProtocol, body: Buffer, contentType: string | undefined, encoding: string | undefined) => {
  try {
    if (protocol === "grpc") {
      // length-prefixed messages: 1 byte compressed flag, 4 bytes length
      let spans = 0
      for (let pos = 0; pos + 5 <= body.length; ) {
        const length = body.readUInt32BE(pos + 1)
        if (body[pos] !== 0 || pos + 5 + length > body.length) return undefined // compressed or truncated message
        spans += countProtobufSpans(body.subarray(pos + 5, pos + 5 + length))
        pos += 5 + length
      }
      return spans
    }
    const plain = encoding === "gzip" ? gunzipSync(body) : encoding === undefined || encoding === "identity" ? body : undefined
    if (plain === undefined) return undefined
    if (contentType?.includes("json")) {
      // only spans carry startTimeUnixNano (events and links do not)
      let spans = 0
      for (let at = plain.indexOf(START_TIME); at >= 0; at = plain.indexOf(START_TIME, at + START_TIME.length)) spans++
      return spans
    }
    return countProtobufSpans(plain)
  } catch {
    return undefined
  }
}

export interface OtlpSink {
  readonly protocol: OtlpProtocol
  readonly port: number
  readonly endpoint: string
  /** Accepted export requests (POST /v1/traces, or the gRPC TraceService/Export method). */
  readonly exports: () => ReadonlyArray<SinkExport>
  /** Requests to any other path or method (answered 404 / UNIMPLEMENTED). */
  readonly rejected: () => number
  readonly contentTypes: () => ReadonlyMap<string, number>
  readonly close: () => Promise<void>
}

const GRPC_EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

/**
 * A minimal OTLP trace receiver on a free loopback port: node:http for http/protobuf and
 * http/json (empty ExportTraceServiceResponse: an empty protobuf body or `{}`), node:http2
 * (cleartext) for grpc (one empty length-prefixed message, grpc-status 0). It reads each
 * body, counts it and throws it away.
 */
export const startOtlpSink = async (protocol: OtlpProtocol): Promise<OtlpSink> => {
  const exports: Array<SinkExport> = []
  const contentTypes = new Map<string, number>()
  let rejected = 0
  const count = (contentType: string | undefined, body: Buffer, encoding: string | undefined) => {
    const at = performance.now()
    exports.push({ at, bytes: body.length, spans: countSpans(protocol, body, contentType, encoding) })
    const key = contentType ?? "(none)"
    contentTypes.set(key, (contentTypes.get(key) ?? 0) + 1)
  }
  const port = await freePort()
  let server: Server
  let close: () => Promise<void>
  if (protocol === "grpc") {
    const h2 = http2.createServer()
    server = h2
    const sessions = new Set<http2.ServerHttp2Session>()
    h2.on("session", (session) => {
      sessions.add(session)
      session.once("close", () => sessions.delete(session))
    })
    h2.on("stream", (stream, headers) => {
      const chunks: Array<Buffer> = []
      stream.on("error", () => {})
      stream.on("data", (chunk: Buffer) => chunks.push(chunk))
      stream.on("end", () => {
        if (headers[":method"] !== "POST" || headers[":path"] !== GRPC_EXPORT_PATH) {
          rejected++
          stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12" }, { endStream: true })
          return
        }
        count(headers["content-type"], Buffer.concat(chunks), undefined)
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
        stream.end(Buffer.alloc(5)) // uncompressed, zero-length ExportTraceServiceResponse
      })
    })
    close = () =>
      new Promise<void>((resolve) => {
        h2.close(() => resolve())
        for (const session of sessions) session.destroy()
      })
  } else {
    const h1 = http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("error", () => {})
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        if (req.method !== "POST" || (req.url ?? "").split("?")[0] !== "/v1/traces") {
          rejected++
          res.writeHead(404, { "content-length": 0 }).end()
          return
        }
        const contentType = req.headers["content-type"]
        count(contentType, Buffer.concat(chunks), req.headers["content-encoding"])
        if (contentType?.includes("json")) res.writeHead(200, { "content-type": "application/json", "content-length": 2 }).end("{}")
        else res.writeHead(200, { "content-type": "application/x-protobuf", "content-length": 0 }).end()
      })
    })
    server = h1
    close = () =>
      new Promise<void>((resolve) => {
        h1.close(() => resolve())
        h1.closeAllConnections()
      })
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => resolve())
  })
  return {
    protocol,
    port,
    endpoint: `http://127.0.0.1:${port}`,
    exports: () => exports,
    rejected: () => rejected,
    contentTypes: () => contentTypes,
    close
  }
}

const formatBytes = (bytes: number) =>
  bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(2)} MiB` : bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`

/** Spans in these exports, undefined when one of them could not be read. */
const spanCount = (exports: ReadonlyArray<SinkExport>) =>
  exports.every((e) => e.spans !== undefined) ? exports.reduce((sum, e) => sum + e.spans!, 0) : undefined

/** What reached the sink while one window's load ran. */
export const windowExports = (sink: OtlpSink, load: LoadResult) => {
  const exports = sink.exports().filter((e) => e.at >= load.measureStart && e.at < load.measureEnd)
  return { exportRequests: exports.length, exportBytes: exports.reduce((sum, e) => sum + e.bytes, 0), spans: spanCount(exports) }
}

/** What the sink received, overall and in the measured windows. */
export const sinkNotes = (sink: OtlpSink, windows: ReadonlyArray<LoadResult>, acceptedEvents: number, stoppedAt: number | undefined) => {
  const all = sink.exports()
  const total = all.reduce((sum, e) => sum + e.bytes, 0)
  const inWindow = all.filter((e) => windows.some((load) => e.at >= load.measureStart && e.at < load.measureEnd))
  const windowBytes = inWindow.reduce((sum, e) => sum + e.bytes, 0)
  const windowS = windows.reduce((sum, load) => sum + (load.measureEnd - load.measureStart) / 1000, 0)
  const afterStop = stoppedAt === undefined ? [] : all.filter((e) => e.at >= stoppedAt)
  const spans = spanCount(all)
  const types = [...sink.contentTypes()].map(([type, n]) => `${type} ×${n}`).join(", ")
  const notes = [
    `OTLP sink (${sink.protocol}, ${sink.endpoint}) received ${all.length} export requests, ${formatBytes(total)}, ` +
      `${spans === undefined ? "span count n/a" : `${spans} spans`} ` +
      `(${inWindow.length} requests, ${formatBytes(windowBytes)} = ${formatBytes(windowBytes / windowS)}/s in the measured window${windows.length > 1 ? "s" : ""}; ` +
      `${afterStop.length} after SIGTERM)` +
      (acceptedEvents > 0
        ? `, ${fmt(total / acceptedEvents, 0)} B${spans === undefined ? "" : ` and ${(spans / acceptedEvents).toFixed(2)} spans`} per accepted event`
        : "") +
      (types ? `; content-type ${types}` : "") +
      (sink.rejected() > 0 ? `; ${sink.rejected()} requests to other paths rejected` : "")
  ]
  if (all.length === 0) notes.push(`NO TRACE EXPORT reached the sink: this run did not measure tracing`)
  return notes
}

