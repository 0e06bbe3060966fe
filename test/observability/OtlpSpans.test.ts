import { assert, describe, it } from "@effect/vitest"
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer"
import { ROOT_CONTEXT } from "@opentelemetry/api"
import { type ReadableSpan, SamplingDecision, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base"
import { randomBytes } from "node:crypto"
import { Cause, Effect, Exit, Option, Tracer } from "effect"
import { attributeValue, makeEnvelope, writeSpan } from "../../src/observability/OtlpEncoding.ts"
import { makeTracer } from "../../src/observability/OtlpSpans.ts"
import { ProtoWriter } from "../../src/observability/ProtoWriter.ts"
import { makeSampler, type SamplerName } from "../../src/observability/Sampler.ts"
import { SpanBatcher } from "../../src/observability/SpanBatcher.ts"
import { decodeTraceRequest } from "../support/Otlp.ts"

const resource = { "service.name": "chatico-mapper", "service.version": "0.1.0", "deployment.replicas": 3, "host.arch": "amd64" }
const scope = { name: "chatico-mapper" }
const CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const CALLER_SPAN = "00f067aa0ba902b7"

/** Runs `program` under the exporting tracer; returns the spans it ended, in order. */
const traced = <A, E>(program: Effect.Effect<A, E>, sampler: SamplerName = "parentbased_always_on", ratio = 1) => {
  const ended: Array<Tracer.Span> = []
  const tracer = makeTracer((span) => ended.push(span), makeSampler(sampler, ratio))
  return program.pipe(Effect.exit, Effect.withTracer(tracer), Effect.map(() => ended))
}

// One resource object for all spans: the SDK groups spans by resource identity.
const sdkResource = { attributes: resource }

const hr = (nanos: bigint): [number, number] => [Number(nanos / 1_000_000_000n), Number(nanos % 1_000_000_000n)]
const OTEL_KIND = { internal: 0, server: 1, client: 2, producer: 3, consumer: 4 } as const
const convert = (record: Readonly<Record<string, unknown>>) =>
  Object.fromEntries(Object.entries(record).map(([key, value]) => [key, attributeValue(value)]))
const context = (span: Tracer.AnySpan) => ({
  traceId: span.traceId,
  spanId: span.spanId,
  traceFlags: span.sampled ? 1 : 0,
  isRemote: span._tag === "ExternalSpan"
})

/**
 * The same span as the SDK's `ReadableSpan`, recording its exit the way
 * `@effect/opentelemetry` does (OK; an `exception` event per error and ERROR
 * with the first message; `effect.fiber.interrupted` for an interruption).
 */
const toReadable = (span: Tracer.Span): ReadableSpan => {
  if (span.status._tag !== "Ended") throw new Error(`${span.name} has not ended`)
  const { endTime, exit, startTime } = span.status
  const attributes = convert(Object.fromEntries(span.attributes))
  const events = ((span as Tracer.NativeSpan)._events ?? []).map(([name, time, eventAttributes]) => ({
    name,
    time: hr(time),
    attributes: convert(eventAttributes),
    droppedAttributesCount: 0
  }))
  let status: { code: number; message?: string } = { code: 1 }
  if (Exit.isFailure(exit)) {
    if (Cause.hasInterruptsOnly(exit.cause)) {
      attributes["effect.fiber.interrupted"] = true
      status = { code: 0 }
    } else {
      const errors = Cause.prettyErrors(exit.cause, { includeCauseInStack: true })
      for (const error of errors) {
        events.push({
          name: "exception",
          time: hr(endTime),
          attributes: { "exception.type": error.name, "exception.message": error.message, "exception.stacktrace": error.stack ?? "" },
          droppedAttributesCount: 0
        })
      }
      status = { code: 2, message: errors[0]!.message }
    }
  }
  const parent = Option.getOrUndefined(span.parent)
  return {
    name: span.name,
    kind: OTEL_KIND[span.kind],
    spanContext: () => context(span),
    parentSpanContext: parent === undefined ? undefined : context(parent),
    startTime: hr(startTime),
    endTime: hr(endTime),
    attributes,
    links: span.links.map((link) => ({ context: context(link.span), attributes: convert(link.attributes), droppedAttributesCount: 0 })),
    events,
    status,
    resource: sdkResource,
    instrumentationScope: scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
    duration: [0, 0],
    ended: true
  } as unknown as ReadableSpan
}

const encode = (spans: ReadonlyArray<Tracer.Span>) => {
  const writer = new ProtoWriter(16)
  for (const span of spans) writeSpan(writer, span)
  return Buffer.from(makeEnvelope(resource, scope)(writer.bytes()))
}

const caller = Tracer.externalSpan({ traceId: CALLER_TRACE, spanId: CALLER_SPAN, sampled: true })

/** One of everything: kinds, attribute types, events, links, a remote parent, an error, an interruption. */
const everything = Effect.gen(function*() {
  yield* Effect.gen(function*() {
    const span = yield* Effect.currentSpan
    span.event("note", 1_700_000_000_123_456_789n, { step: 1, ok: true })
    yield* Effect.annotateCurrentSpan({ late: "é".repeat(100), ratio: 0.25 })
  }).pipe(Effect.withSpan("publish", {
    kind: "producer",
    attributes: {
      text: "x",
      count: 42,
      negative: -7,
      large: 2 ** 40,
      double: 1.5,
      flag: false,
      words: ["a", "b"],
      numbers: [1, 2, 3],
      bigint: 10n,
      object: { a: 1 },
      long: "y".repeat(300)
    }
  }))
  yield* Effect.fail(new Error("boom")).pipe(Effect.withSpan("failing"), Effect.ignore)
  yield* Effect.interrupt.pipe(Effect.withSpan("interrupted"), Effect.exit)
  const first = yield* Effect.makeSpan("first")
  first.end(1_700_000_000_000_000_000n, Exit.void)
  yield* Effect.void.pipe(Effect.withSpan("Journal.batch", { links: [{ span: first, attributes: { why: "batched" } }, { span: caller, attributes: {} }] }))
  yield* Effect.void.pipe(Effect.withSpan("POST /webhook", { kind: "server", parent: caller }))
}).pipe(Effect.withSpan("root", { kind: "client", root: true }))

describe("OtlpSpans", () => {
  it.effect("encodes spans to exactly the bytes of the SDK's ProtobufTraceSerializer", () =>
    Effect.gen(function*() {
      const spans = yield* traced(everything)
      assert.deepStrictEqual(spans.map((span) => span.name), ["publish", "failing", "interrupted", "first", "Journal.batch", "POST /webhook", "root"])
      const ours = encode(spans)
      const sdk = ProtobufTraceSerializer.serializeRequest(spans.map(toReadable))
      assert.isDefined(sdk)
      assert.strictEqual(ours.toString("hex"), Buffer.from(sdk!).toString("hex"))

      // And it decodes to what was traced.
      const decoded = decodeTraceRequest(ours)
      const byName = new Map(decoded.map((span) => [span.name, span]))
      const root = byName.get("root")!
      assert.deepStrictEqual(root.resource, resource)
      assert.strictEqual(root.scope, "chatico-mapper")
      assert.strictEqual(root.parentSpanId, undefined)
      assert.strictEqual(byName.get("publish")!.parentSpanId, root.spanId)
      assert.strictEqual(byName.get("publish")!.kind, 4)
      assert.deepStrictEqual(byName.get("publish")!.attributes["numbers"], [1, 2, 3])
      assert.strictEqual(byName.get("publish")!.attributes["negative"], -7)
      assert.strictEqual(byName.get("publish")!.attributes["bigint"], "10")
      assert.deepStrictEqual(byName.get("publish")!.events, ["note"])
      assert.strictEqual(byName.get("failing")!.status, 2)
      assert.deepStrictEqual(byName.get("failing")!.events, ["exception"])
      assert.strictEqual(byName.get("interrupted")!.attributes["effect.fiber.interrupted"], true)
      assert.deepStrictEqual(byName.get("Journal.batch")!.links.map((link) => link.spanId), [byName.get("first")!.spanId, CALLER_SPAN])
      assert.strictEqual(byName.get("POST /webhook")!.traceId, CALLER_TRACE)
      assert.strictEqual(byName.get("POST /webhook")!.parentSpanId, CALLER_SPAN)
    }))

  it.effect("samples as OTEL_TRACES_SAMPLER says", () =>
    Effect.gen(function*() {
      const unsampledCaller = Tracer.externalSpan({ traceId: CALLER_TRACE, spanId: CALLER_SPAN, sampled: false })
      const roots = Effect.forEach(Array.from({ length: 2000 }), () => Effect.void.pipe(Effect.withSpan("r", { root: true })), { discard: true })
      assert.strictEqual((yield* traced(roots)).length, 2000)
      assert.strictEqual((yield* traced(roots, "always_off")).length, 0)
      assert.strictEqual((yield* traced(roots, "traceidratio", 0)).length, 0)
      const half = (yield* traced(roots, "parentbased_traceidratio", 0.5)).length
      assert.isTrue(half > 850 && half < 1150, `ratio 0.5 sampled ${half} of 2000`)
      // Parent-based: a caller's decision wins, either way.
      const child = (parent: Tracer.AnySpan) => Effect.void.pipe(Effect.withSpan("c", { parent }))
      assert.strictEqual((yield* traced(child(caller), "parentbased_always_off")).length, 1)
      assert.strictEqual((yield* traced(child(unsampledCaller))).length, 0)
      // An unsampled span still carries its ids (and flag) to the traceparent it propagates.
      const span = yield* Effect.makeSpan("s").pipe(Effect.withTracer(makeTracer(() => {}, makeSampler("always_off", 1))))
      assert.isFalse(span.sampled)
      assert.match(span.traceId, /^[0-9a-f]{32}$/)
    }))

  it("decides traceidratio exactly as the SDK's TraceIdRatioBasedSampler", () => {
    const ids = [
      "ffffffffffffffffffffffffffffffff",
      "00000000000000000000000000000001",
      "00000000000000000000000000000000",
      ...Array.from({ length: 2000 }, () => randomBytes(16).toString("hex"))
    ]
    for (const ratio of [0, 0.001, 0.25, 0.5, 0.999, 1]) {
      const ours = makeSampler("traceidratio", ratio)
      const sdk = new TraceIdRatioBasedSampler(ratio)
      const differing = ids.filter((id) =>
        ours(false, id, true) !== (sdk.shouldSample(ROOT_CONTEXT, id).decision === SamplingDecision.RECORD_AND_SAMPLED)
      )
      assert.deepStrictEqual(differing, [], `ratio ${ratio}`)
    }
  })

  it("batches up to maxExportBatchSize, drops what exceeds maxQueueSize until the collector answers", async () => {
    const sent: Array<{ spans: number; done: (ok: boolean, error?: unknown) => void }> = []
    const batcher = new SpanBatcher(
      makeEnvelope(resource, scope),
      (request, spans, done) => {
        assert.strictEqual(decodeTraceRequest(request).length, spans)
        sent.push({ spans, done })
      },
      { maxQueueSize: 4, maxExportBatchSize: 2, scheduledDelayMillis: 20, exportTimeoutMillis: 1000 }
    )
    const spans = Effect.runSync(traced(Effect.forEach([1, 2, 3, 4, 5, 6], () => Effect.void.pipe(Effect.withSpan("s")), { discard: true })))
    for (const span of spans.slice(0, 5)) batcher.add(span)
    assert.deepStrictEqual(sent.map((s) => s.spans), [2, 2])
    assert.strictEqual(batcher.counts.dropped, 1) // four spans are waiting for the collector
    sent[0]!.done(true)
    sent[1]!.done(false, new Error("collector down"))
    batcher.add(spans[5]!)
    assert.strictEqual(sent.length, 2)
    await new Promise((resolve) => setTimeout(resolve, 60)) // the schedule sends a partial batch
    assert.deepStrictEqual(sent.map((s) => s.spans), [2, 2, 1])
    sent[2]!.done(true)
    await batcher.drain()
    assert.deepStrictEqual(batcher.counts, { exported: 3, dropped: 1, failed: 2 })
  })
})
