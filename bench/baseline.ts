/**
 * The benchmark's baseline: the least a webhook router can do and still promise delivery.
 * A plain node:http server that reads the body, checks X-Hub-Signature-256 (constant time),
 * parses the JSON and, per change, publishes one persistent message on a RabbitMQ confirm
 * channel to the queue of the entry's owner, answering 200 only after every confirm.
 * No database, no journal, no retries.
 *
 * Run by bench/run.ts as a child process; configured through the environment:
 *   BASELINE_PORT, BASELINE_HOST, BASELINE_SECRET, RABBITMQ_URL,
 *   BASELINE_ROUTES  JSON object owner_id → queue name (queues must already exist)
 * Answers GET /health with 200 once connected to RabbitMQ. SIGTERM closes it cleanly.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto"
import http from "node:http"
import amqp from "amqplib"
import type { Options } from "amqplib"

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined || value === "") {
    console.error(`baseline: missing environment variable ${name}`)
    process.exit(1)
  }
  return value
}

const port = Number(env("BASELINE_PORT"))
const host = env("BASELINE_HOST", "127.0.0.1")
const secret = env("BASELINE_SECRET")
const rabbitmqUrl = env("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
const routes = new Map<string, string>(Object.entries(JSON.parse(env("BASELINE_ROUTES")) as Record<string, string>))
const maxBodyBytes = 5 * 1024 * 1024

const connection = await amqp.connect(rabbitmqUrl)
const channel = await connection.createConfirmChannel()
let returned = 0
let unroutable = 0
connection.on("error", (err) => console.error(`baseline: connection error: ${err.message}`))
channel.on("error", (err) => console.error(`baseline: channel error: ${err.message}`))
channel.on("return", () => returned++)

const publish = (queue: string, content: Buffer, options: Options.Publish) =>
  new Promise<void>((resolve, reject) => {
    channel.sendToQueue(queue, content, options, (err) => (err ? reject(err) : resolve()))
  })

const reply = (res: http.ServerResponse, status: number, body: string) => {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  res.end(body)
}

const verify = (header: string | string[] | undefined, body: Buffer) => {
  if (typeof header !== "string" || !header.startsWith("sha256=") || header.length !== 71) return false
  const given = Buffer.from(header.slice(7), "hex")
  if (given.length !== 32) return false
  const expected = createHmac("sha256", secret).update(body).digest()
  return timingSafeEqual(given, expected)
}

interface Entry {
  readonly id?: unknown
  readonly time?: unknown
  readonly changes?: ReadonlyArray<{ readonly field?: unknown; readonly value?: unknown }>
}

const handleWebhook = async (res: http.ServerResponse, body: Buffer, signature: string | string[] | undefined) => {
  if (!verify(signature, body)) return reply(res, 401, `{"error":"invalid signature"}`)
  let payload: { object?: unknown; entry?: unknown }
  try {
    payload = JSON.parse(body.toString("utf8"))
  } catch {
    return reply(res, 400, `{"error":"body is not JSON"}`)
  }
  if (typeof payload !== "object" || payload === null || typeof payload.object !== "string" || !Array.isArray(payload.entry)) {
    return reply(res, 400, `{"error":"expected {object, entry[]}"}`)
  }
  const receivedAt = new Date().toISOString()
  const object = payload.object
  const confirms: Array<Promise<void>> = []
  for (const entry of payload.entry as ReadonlyArray<Entry>) {
    const owner = String(entry.id ?? "")
    const queue = routes.get(owner)
    if (queue === undefined) {
      unroutable++
      continue
    }
    for (const change of entry.changes ?? []) {
      const field = String(change.field ?? "")
      const valueJson = JSON.stringify(change.value ?? null)
      const eventId = createHash("sha256").update(`${object}\0${owner}\0${field}\0${valueJson}`).digest("hex")
      const media = (change.value as { media?: { id?: unknown } } | undefined)?.media?.id
      const message =
        `{"event_id":"${eventId}","object":${JSON.stringify(object)},"field":${JSON.stringify(field)},` +
        `"owner_id":${JSON.stringify(owner)},"entry_id":${JSON.stringify(owner)},"entry_time":${JSON.stringify(entry.time ?? null)},` +
        `"media_id":${media === undefined ? "null" : JSON.stringify(String(media))},"received_at":"${receivedAt}","value":${valueJson}}`
      confirms.push(
        publish(queue, Buffer.from(message), {
          persistent: true,
          mandatory: true,
          messageId: eventId,
          contentType: "application/json",
          timestamp: Date.now(),
          type: `${object}.${field}`,
          headers: { "x-owner-id": owner, "x-attempt": 1 }
        })
      )
    }
  }
  try {
    await Promise.all(confirms)
    reply(res, 200, `{"status":"ok"}`)
  } catch {
    res.setHeader("retry-after", "1")
    reply(res, 503, `{"error":"publish not confirmed"}`)
  }
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const path = (req.url ?? "/").split("?")[0]
  if (req.method === "GET" && path === "/health") return reply(res, 200, `{"status":"ok","returned":${returned},"unroutable":${unroutable}}`)
  if (req.method !== "POST" || (path !== "/webhook" && path !== "/webhook/")) {
    req.resume()
    return reply(res, 404, `{"error":"not found"}`)
  }
  const chunks: Array<Buffer> = []
  let size = 0
  let tooLarge = false
  req.on("data", (chunk: Buffer) => {
    size += chunk.length
    if (size > maxBodyBytes) tooLarge = true
    else chunks.push(chunk)
  })
  req.on("end", () => {
    if (tooLarge) return reply(res, 413, `{"error":"body too large"}`)
    handleWebhook(res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), req.headers["x-hub-signature-256"]).catch(
      (err: unknown) => {
        console.error(`baseline: ${String(err)}`)
        if (!res.headersSent) reply(res, 500, `{"error":"internal"}`)
      }
    )
  })
})

server.listen(port, host)

const shutdown = () => {
  // finish in-flight requests (their confirms), then close the channel and connection
  const force = setTimeout(() => process.exit(0), 5_000)
  force.unref()
  server.close(() => {
    Promise.resolve()
      .then(() => channel.close())
      .then(() => connection.close())
      .catch(() => {})
      .finally(() => process.exit(0))
  })
  server.closeIdleConnections()
}
process.once("SIGTERM", shutdown)
process.once("SIGINT", shutdown)
