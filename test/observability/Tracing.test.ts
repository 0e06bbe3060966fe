import { assert, describe, it, layer } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import amqp from "amqplib"
import { Effect, Layer, Option, Redacted } from "effect"
import { createServer } from "node:http"
import { tracingToOtlp, tracingWith } from "../../src/observability/TracingLayers.ts"
import {
  collect,
  deleteQueues,
  dropDatabase,
  faultEnv,
  newName,
  psql,
  SECRET,
  startService,
  stopService,
  waitHealthy
} from "../faults/harness.ts"
import { startTcpProxy } from "../support/TcpProxy.ts"
import { APP_SECRET, TestApp, VERIFY_TOKEN } from "../support/TestApp.ts"
import { decodeTraceRequest, fromReadable, type TestSpan } from "../support/Otlp.ts"
import { GRAPH_TOKEN, GraphStandIn, replies } from "../support/GraphStandIn.ts"
import { tapLogLines } from "../support/SecretWatch.ts"
import { commentEvent, postWebhook, sign, uniqueId, webhookText } from "../support/Webhooks.ts"

const ownerId = "3300000001"

interface Received {
  readonly traceparent: string
  readonly tracestate: unknown
  readonly eventId: string
}

const consume = (queue: string, expected: number) =>
  Effect.promise(async () => {
    const connection = await amqp.connect("amqp://guest:guest@127.0.0.1:5672")
    const channel = await connection.createChannel()
    const received: Array<Received> = []
    const deadline = Date.now() + 15_000
    while (received.length < expected && Date.now() < deadline) {
      const message = await channel.get(queue, { noAck: true })
      if (message === false) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        continue
      }
      const header = message.properties.headers?.traceparent
      received.push({
        traceparent: typeof header === "string" ? header : "",
        tracestate: message.properties.headers?.tracestate,
        eventId: String(message.properties.messageId)
      })
    }
    await connection.close()
    return received
  })

/** Waits (up to 5 s) until the finished spans satisfy `done`; exports may trail the answer a little. */
const spansWhen = (spans: () => ReadonlyArray<TestSpan>, done: (spans: ReadonlyArray<TestSpan>) => boolean) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 5_000
    while (Date.now() < deadline && !done(spans())) await new Promise((resolve) => setTimeout(resolve, 20))
    return spans()
  })

const SERVER = 2
const CLIENT = 3
const PRODUCER = 4

// Both trace paths: the default (OTLP/protobuf, effect's spans encoded as they
// end, `observability/OtlpSpans.ts`; the requests are decoded here) and
// `@effect/opentelemetry` with the SDK (grpc and http/json; in-memory exporter).
/** The default trace path, its export requests decoded into `into` (sent 20 ms after a span ends). */
const decodedTracing = (into: Array<TestSpan>) =>
  tracingToOtlp({
    sampler: "parentbased_always_on",
    ratio: 1,
    limits: { scheduledDelayMillis: 20 },
    send: {
      send: (request, _spans, done) => {
        into.push(...decodeTraceRequest(request))
        done(true)
      },
      shutdown: () => Promise.resolve()
    }
  })

const sdkExporter = new InMemorySpanExporter()
const decoded: Array<TestSpan> = []
const variants = [
  {
    name: "OTLP/protobuf",
    layer: decodedTracing(decoded),
    spans: (): ReadonlyArray<TestSpan> => decoded.slice(),
    reset: () => {
      decoded.length = 0
    }
  },
  {
    name: "@effect/opentelemetry and the SDK",
    layer: tracingWith(new SimpleSpanProcessor(sdkExporter)),
    spans: (): ReadonlyArray<TestSpan> => sdkExporter.getFinishedSpans().map(fromReadable),
    reset: () => sdkExporter.reset()
  }
]

for (const variant of variants) {
  const queue = `t.trace.${Math.random().toString(36).slice(2, 8)}`
  const { reset } = variant
  layer(
    TestApp.layer("tracing", {}, variant.layer),
    { excludeTestServices: true, timeout: "60 seconds" }
  )(`tracing (${variant.name})`, (it) => {
    it.effect("one webhook with three changes is one trace: HTTP span, journal batch span, three publish spans", () =>
      Effect.gen(function*() {
        const app = yield* TestApp
        const created = yield* app.request("/worker-apps/", {
          method: "POST",
          json: { name: "traced", owner_id: ownerId, queue_name: queue }
        })
        assert.strictEqual(created.status, 201)
        reset()
        const changes = [1, 2, 3].map((i) => ({ field: "comments", value: { id: `trace-c${i}`, text: "hi" } }))
        const body = JSON.stringify({ object: "instagram", entry: [{ id: ownerId, time: 1, changes }] })
        const signature = sign(body)
        const response = yield* app.request("/webhook", {
          method: "POST",
          auth: false,
          body,
          headers: { "content-type": "application/json", "x-hub-signature-256": signature }
        })
        assert.strictEqual(response.status, 200)
        const messages = yield* consume(queue, 3)
        assert.strictEqual(messages.length, 3)

        // A publish span ends at its confirm, which may come just after the consumer got the message.
        const spans = yield* spansWhen(variant.spans, (all) => all.filter((s) => s.name === "publish").length >= 3)
        const server = spans.find((span) => span.kind === SERVER && span.attributes["url.path"] === "/webhook")
        assert.isDefined(server, spans.map((s) => s.name).join(", "))
        // OpenTelemetry's HTTP server span: `{method} {route}`, the route, the path, the status.
        assert.strictEqual(server!.name, "POST /webhook")
        assert.strictEqual(server!.attributes["http.route"], "/webhook")
        assert.strictEqual(server!.attributes["url.path"], "/webhook")
        assert.strictEqual(server!.attributes["http.response.status_code"], 200)
        assert.strictEqual(server!.status, 1) // OK
        const traceId = server!.traceId
        const inTrace = spans.filter((span) => span.traceId === traceId)
        // The journal span: the batch write that committed this webhook.
        assert.isTrue(inTrace.some((span) => span.name === "Journal.batch"), inTrace.map((s) => s.name).join(", "))
        const publishes = inTrace.filter((span) => span.name === "publish")
        assert.strictEqual(publishes.length, 3)
        for (const span of publishes) {
          assert.strictEqual(span.kind, PRODUCER)
          assert.strictEqual(span.attributes["messaging.system"], "rabbitmq")
          assert.strictEqual(span.attributes["messaging.destination.name"], queue)
        }
        const publishIds = new Set(publishes.map((span) => span.spanId))
        for (const message of messages) {
          const [, messageTrace, messageSpan] = message.traceparent.split("-")
          assert.strictEqual(messageTrace, traceId)
          assert.isTrue(publishIds.has(messageSpan ?? ""))
        }
        // Webhooks journaled together: each trace holds the batch span or is linked from it.
        reset()
        const bodies = [1, 2, 3, 4, 5].map((i) =>
          JSON.stringify({ object: "instagram", entry: [{ id: ownerId, time: 1, changes: [{ field: "comments", value: { id: `trace-b${i}` } }] }] })
        )
        yield* Effect.promise(() =>
          Promise.all(bodies.map((b) =>
            fetch(`${app.baseUrl}/webhook`, {
              method: "POST",
              headers: { "content-type": "application/json", "x-hub-signature-256": sign(b) },
              body: b
            }).then((r) => r.arrayBuffer())
          ))
        )
        yield* consume(queue, 5)
        const isWebhook = (span: TestSpan) => span.kind === SERVER && span.attributes["url.path"] === "/webhook"
        const after = yield* spansWhen(variant.spans, (all) => all.filter(isWebhook).length >= 5)
        const serverTraces = after.filter(isWebhook).map((span) => span.traceId)
        assert.strictEqual(serverTraces.length, 5)
        const batches = after.filter((span) => span.name === "Journal.batch")
        for (const trace of serverTraces) {
          assert.isTrue(
            batches.some((b) => b.traceId === trace || b.links.some((l) => l.traceId === trace)),
            `trace ${trace} has no journal batch span`
          )
        }
        yield* Effect.promise(() => deleteQueues([queue]))
        // No secret, signature or message body in any attribute.
        const attributes = JSON.stringify(spans.map((span) => span.attributes))
        for (const secret of [APP_SECRET, signature.slice(7), "test-secret-key-0123456789", "trace-c1"]) {
          assert.notInclude(attributes, secret)
        }
      }))

    it.effect("a webhook continues the caller's traceparent; the handshake's token is not recorded", () => {
      const logs = tapLogLines()
      return Effect.gen(function*() {
        const app = yield* TestApp
        reset()
        const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
        const body = JSON.stringify({ object: "page", entry: [{ id: ownerId, time: 1, changes: [{ field: "feed", value: { id: "trace-p1" } }] }] })
        const posted = yield* app.request("/webhook", {
          method: "POST",
          auth: false,
          body,
          headers: {
            "content-type": "application/json",
            "x-hub-signature-256": sign(body),
            traceparent: `00-${callerTrace}-00f067aa0ba902b7-01`
          }
        })
        assert.strictEqual(posted.status, 200)
        const handshake = yield* app.request(`/webhook?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=42`, { auth: false })
        assert.strictEqual(handshake.status, 200)
        const refused = yield* app.request(`/webhook?hub.mode=subscribe&hub.verify_token=wrong-token-7&hub.challenge=42`, { auth: false })
        assert.strictEqual(refused.status, 403)
        const servers = (yield* spansWhen(variant.spans, (all) => all.filter((span) => span.kind === SERVER).length >= 3))
          .filter((span) => span.kind === SERVER)
        const post = servers.find((span) => span.name === "POST /webhook")
        assert.isDefined(post, servers.map((s) => s.name).join(", "))
        assert.strictEqual(post!.traceId, callerTrace)
        assert.strictEqual(post!.parentSpanId, "00f067aa0ba902b7")
        const gets = servers.filter((span) => span.name === "GET /webhook")
        assert.deepStrictEqual(gets.map((span) => span.attributes["http.response.status_code"]).sort(), [200, 403])
        for (const span of gets) assert.strictEqual(span.attributes["url.path"], "/webhook")
        const attributes = JSON.stringify(servers.map((span) => span.attributes))
        assert.notInclude(attributes, VERIFY_TOKEN)
        assert.notInclude(attributes, "wrong-token-7")
        // A request's log lines carry its server span's trace and span ids (the tests log warnings and up).
        const refusedSpan = gets.find((span) => span.attributes["http.response.status_code"] === 403)!
        const logged = (message: string) => logs.lines.map((line) => JSON.parse(line)).find((line) => line.message === message)
        assert.deepInclude(logged("webhook verification refused"), { trace_id: refusedSpan.traceId, span_id: refusedSpan.spanId })
      }).pipe(Effect.ensuring(Effect.sync(logs.stop)))
    })

    it.effect("a caller's tracestate goes on, unchanged, with its trace to the worker's message", () =>
      Effect.gen(function*() {
        const app = yield* TestApp
        const stateQueue = `${queue}.state`
        const owner = "3300000009"
        const created = yield* app.request("/worker-apps/", {
          method: "POST",
          json: { name: "traced-state", owner_id: owner, queue_name: stateQueue }
        })
        assert.strictEqual(created.status, 201)
        const callerTrace = "0af7651916cd43dd8448eb211c80319c"
        const tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        const bodies = [tracestate, `long=${"x".repeat(600)}`].map((state, i) => ({
          state,
          body: JSON.stringify({ object: "instagram", entry: [{ id: owner, time: 1, changes: [{ field: "comments", value: { id: `trace-s${i}` } }] }] })
        }))
        for (const { body, state } of bodies) {
          const response = yield* Effect.promise(() =>
            fetch(`${app.baseUrl}/webhook`, {
              method: "POST",
              headers: {
                "content-type": "application/json",
                "x-hub-signature-256": sign(body),
                traceparent: `00-${callerTrace}-b7ad6b7169203331-01`,
                tracestate: state
              },
              body
            })
          )
          assert.strictEqual(response.status, 200)
        }
        const messages = yield* consume(stateQueue, 2)
        yield* Effect.promise(() => deleteQueues([stateQueue]))
        assert.strictEqual(messages.length, 2)
        for (const message of messages) assert.strictEqual(message.traceparent.split("-")[1], callerTrace)
        // The valid one is passed on as it came; one over W3C's 512 characters is not passed on at all.
        assert.deepStrictEqual(messages.map((message) => message.tracestate).sort(), [tracestate, undefined])
        const database = yield* Effect.map(TestApp, (a) => a.database)
        assert.include(psql(database, "SELECT trace_context::text FROM webhook_events WHERE trace_context ? 'tracestate'"), tracestate)
      }))
  })
}

/** A stand-in OTLP/HTTP protobuf collector on loopback: keeps every span it is sent. */
const startCollector = () =>
  new Promise<{ port: number; spans: Array<ReturnType<typeof decodeTraceRequest>[number]>; contentTypes: Set<string>; close: () => void }>((resolve) => {
    const spans: Array<ReturnType<typeof decodeTraceRequest>[number]> = []
    const contentTypes = new Set<string>()
    const server = createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        contentTypes.add(request.headers["content-type"] ?? "")
        spans.push(...decodeTraceRequest(Buffer.concat(chunks)))
        response.writeHead(200, { "content-type": "application/x-protobuf" }).end()
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resolve({ port: typeof address === "object" && address !== null ? address.port : 0, spans, contentTypes, close: () => server.close() })
    })
  })

describe("tracing across a crash", () => {
  it.live("after SIGKILL and recovery, the publish span belongs to the webhook's trace", () =>
    Effect.promise(async () => {
      const collector = await startCollector()
      const proxy = await startTcpProxy(5672)
      const database = newName("trace")
      const crashQueue = `t.trace.crash.${Math.random().toString(36).slice(2, 8)}`
      // The default protocol (http/protobuf): the service's own encoder and the SDK's transport.
      const otel = {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`,
        OTEL_BSP_SCHEDULE_DELAY: "100"
      }
      let service = await startService(faultEnv(database, { ...otel, RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${proxy.port}` }))
      try {
        await waitHealthy(service)
        const created = await fetch(`${service.baseUrl}/worker-apps/`, {
          method: "POST",
          headers: { authorization: "Bearer fault-admin-key", "content-type": "application/json" },
          body: JSON.stringify({ name: "crash", owner_id: "3300000002", queue_name: crashQueue })
        })
        assert.strictEqual(created.status, 201)
        proxy.cut()
        const body = JSON.stringify({
          object: "instagram",
          entry: [{ id: "3300000002", time: 1, changes: [{ field: "comments", value: { id: "crash-c1" } }] }]
        })
        const response = await fetch(`${service.baseUrl}/webhook`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-hub-signature-256": sign(body, "fault-app-secret"),
            // A caller's trace, with vendor state that must survive the crash too.
            traceparent: "00-5b8aa5a2d2c872e8321cf37308d69df2-051581bf3cb55c13-01",
            tracestate: "vendor=crash-proof"
          },
          body
        })
        assert.strictEqual(response.status, 200)
        const traceId = psql(database, "SELECT trace_context->>'traceparent' FROM webhook_events").split("-")[1]!
        await new Promise((resolve) => setTimeout(resolve, 1_000))
        service.child.kill("SIGKILL")
        await service.exited
        const consumer = await collect(crashQueue)
        service = await startService(faultEnv(database, otel), service.port)
        await waitHealthy(service)
        assert.deepStrictEqual(await consumer.waitFor(["crash-c1"]), [])
        assert.strictEqual(traceId, "5b8aa5a2d2c872e8321cf37308d69df2")
        assert.strictEqual(consumer.headers.get("crash-c1")?.["tracestate"], "vendor=crash-proof")
        assert.strictEqual(String(consumer.headers.get("crash-c1")?.["traceparent"]).split("-")[1], traceId)
        await consumer.close()
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline && !collector.spans.some((s) => s.name === "publish" && s.traceId === traceId)) {
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        const publish = collector.spans.find((s) => s.name === "publish" && s.traceId === traceId)
        assert.isDefined(publish)
        assert.strictEqual(publish!.traceId, traceId)
        // The first process's HTTP span reached the collector before the kill: the trace is whole.
        assert.isTrue(collector.spans.some((s) => s.traceId === traceId && s.name === "POST /webhook"))
        assert.strictEqual(publish!.attributes["messaging.system"], "rabbitmq")
        assert.strictEqual(publish!.resource["service.name"], "chatico-mapper")
        assert.deepStrictEqual([...collector.contentTypes], ["application/x-protobuf"])
      } finally {
        await stopService(service)
        await proxy.close()
        collector.close()
        dropDatabase(database)
        await deleteQueues([crashQueue])
      }
    }), 60_000)

  it.live("OTEL_SERVICE_NAME names the service in the spans' resource", () =>
    Effect.promise(async () => {
      const collector = await startCollector()
      const database = newName("trace_name")
      const service = await startService(faultEnv(database, {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`,
        OTEL_BSP_SCHEDULE_DELAY: "100",
        OTEL_SERVICE_NAME: "chatico-eu-1",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=staging"
      }))
      try {
        await waitHealthy(service)
        const body = webhookText([[commentEvent("3300000003")]])
        const response = await fetch(`${service.baseUrl}/webhook`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-hub-signature-256": sign(body, SECRET) },
          body
        })
        assert.strictEqual(response.status, 200)
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline && !collector.spans.some((s) => s.name === "POST /webhook")) {
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        const span = collector.spans.find((s) => s.name === "POST /webhook")
        assert.isDefined(span)
        assert.strictEqual(span!.resource["service.name"], "chatico-eu-1")
        assert.strictEqual(span!.resource["deployment.environment"], "staging")
      } finally {
        await stopService(service)
        collector.close()
        dropDatabase(database)
      }
    }), 60_000)
})

// Owner resolution by the Graph API: its call is part of the webhook's trace, under the publish span.
const graphSpans: Array<TestSpan> = []
const graphQueue = `t.trace.graph.${Math.random().toString(36).slice(2, 8)}`
layer(
  Layer.unwrap(Effect.map(GraphStandIn, (standIn) =>
    TestApp.layer("tracing_graph", {
      ownerResolution: "graph",
      instagramAccessToken: Option.some(Redacted.make(GRAPH_TOKEN)),
      graphApiUrl: standIn.url
    }, decodedTracing(graphSpans)))).pipe(Layer.provideMerge(GraphStandIn.layer)),
  { excludeTestServices: true, timeout: "60 seconds" }
)("tracing with owner resolution by the Graph API", (it) => {
  it.effect("the Graph API call is a client span under the event's publish span, in the webhook's trace", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const standIn = yield* GraphStandIn
      const owner = uniqueId()
      const media = uniqueId()
      standIn.script(media, replies.owner(owner))
      const created = yield* app.request("/worker-apps/", {
        method: "POST",
        json: { name: "traced-graph", owner_id: owner, queue_name: graphQueue }
      })
      assert.strictEqual(created.status, 201)
      // The entry is an account no worker app serves: only the media's owner routes the event.
      const response = yield* postWebhook(app, webhookText([[commentEvent(uniqueId(), { mediaId: media })]]))
      assert.strictEqual(response.status, 200)
      assert.strictEqual((yield* consume(graphQueue, 1)).length, 1)
      yield* Effect.promise(() => deleteQueues([graphQueue]))
      const spans = yield* spansWhen(() => graphSpans, (all) => all.some((span) => span.name === "publish"))
      const server = spans.find((span) => span.kind === SERVER && span.attributes["url.path"] === "/webhook")
      assert.isDefined(server)
      const inTrace = spans.filter((span) => span.traceId === server!.traceId)
      const publish = inTrace.find((span) => span.name === "publish")
      assert.isDefined(publish, inTrace.map((s) => s.name).join(", "))
      const lookup = inTrace.find((span) => span.name === "GraphApi.mediaOwner")
      assert.isDefined(lookup, inTrace.map((s) => s.name).join(", "))
      assert.strictEqual(lookup!.parentSpanId, publish!.spanId)
      const client = inTrace.find((span) => span.kind === CLIENT && span.parentSpanId === lookup!.spanId)
      assert.isDefined(client, inTrace.map((s) => `${s.name}/${s.kind}`).join(", "))
      // The call's URL is recorded with its token and proof redacted.
      assert.notInclude(JSON.stringify(client!.attributes), GRAPH_TOKEN)
    }))
})
