import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"

/**
 * Spans as the tests look at them, whichever way they were made: decoded from
 * an OTLP/protobuf export request, or taken from the SDK's in-memory exporter.
 * `kind` and `status` use OTLP's numbers (server 2, producer 4; OK 1, ERROR 2).
 */
export interface TestSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly kind: number
  readonly attributes: Readonly<Record<string, unknown>>
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
  readonly status: number
  readonly events: ReadonlyArray<string>
}

/** A span from the SDK's in-memory exporter. */
export const fromReadable = (span: ReadableSpan): TestSpan => ({
  traceId: span.spanContext().traceId,
  spanId: span.spanContext().spanId,
  parentSpanId: span.parentSpanContext?.spanId,
  name: span.name,
  kind: span.kind + 1,
  attributes: span.attributes,
  links: span.links.map((link) => ({ traceId: link.context.traceId, spanId: link.context.spanId })),
  status: span.status.code,
  events: span.events.map((event) => event.name)
})

// A protobuf reader just big enough for opentelemetry/proto/trace/v1.

type Field = { readonly field: number; readonly wireType: number; readonly value: number | bigint | Buffer }

const readVarint = (buf: Buffer, pos: number): [bigint, number] => {
  let value = 0n
  let shift = 0n
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated varint")
    const byte = buf[pos++]!
    value |= BigInt(byte & 0x7f) << shift
    if (byte < 0x80) return [value, pos]
    shift += 7n
  }
}

/** The fields of one message, in order; throws on anything malformed. */
export const fields = (buf: Buffer): Array<Field> => {
  const out: Array<Field> = []
  let pos = 0
  while (pos < buf.length) {
    const [key, afterKey] = readVarint(buf, pos)
    pos = afterKey
    const field = Number(key >> 3n)
    const wireType = Number(key & 7n)
    if (wireType === 0) {
      const [value, next] = readVarint(buf, pos)
      out.push({ field, wireType, value })
      pos = next
    } else if (wireType === 1) {
      out.push({ field, wireType, value: buf.readBigUInt64LE(pos) })
      pos += 8
    } else if (wireType === 5) {
      out.push({ field, wireType, value: buf.readUInt32LE(pos) })
      pos += 4
    } else if (wireType === 2) {
      const [length, next] = readVarint(buf, pos)
      const end = next + Number(length)
      if (end > buf.length) throw new Error("length overruns the message")
      out.push({ field, wireType, value: buf.subarray(next, end) })
      pos = end
    } else throw new Error(`unexpected wire type ${wireType}`)
  }
  return out
}

const bytesOf = (list: Array<Field>, field: number) => list.filter((f) => f.field === field).map((f) => f.value as Buffer)
const firstBytes = (list: Array<Field>, field: number) => bytesOf(list, field)[0]
const firstNumber = (list: Array<Field>, field: number) => {
  const found = list.find((f) => f.field === field)
  return found === undefined ? undefined : found.value
}

const anyValue = (buf: Buffer): unknown => {
  const [f] = fields(buf)
  if (f === undefined) return undefined
  switch (f.field) {
    case 1:
      return (f.value as Buffer).toString("utf8")
    case 2:
      return f.value === 1n
    case 3:
      return Number(BigInt.asIntN(64, f.value as bigint))
    case 4: {
      const b = Buffer.alloc(8)
      b.writeBigUInt64LE(f.value as bigint)
      return b.readDoubleLE()
    }
    case 5:
      return bytesOf(fields(f.value as Buffer), 1).map(anyValue)
    default:
      throw new Error(`unexpected AnyValue field ${f.field}`)
  }
}

const keyValues = (list: ReadonlyArray<Buffer>) => {
  const out: Record<string, unknown> = {}
  for (const kv of list) {
    const parts = fields(kv)
    out[firstBytes(parts, 1)!.toString("utf8")] = anyValue(firstBytes(parts, 2) ?? Buffer.alloc(0))
  }
  return out
}

/** The spans of an ExportTraceServiceRequest, with each resource's attributes. */
export const decodeTraceRequest = (body: Uint8Array) => {
  const spans: Array<TestSpan & { readonly resource: Readonly<Record<string, unknown>>; readonly scope: string }> = []
  for (const resourceSpans of bytesOf(fields(Buffer.from(body)), 1)) {
    const rs = fields(resourceSpans)
    const resource = keyValues(bytesOf(fields(firstBytes(rs, 1) ?? Buffer.alloc(0)), 1))
    for (const scopeSpans of bytesOf(rs, 2)) {
      const ss = fields(scopeSpans)
      const scope = firstBytes(fields(firstBytes(ss, 1) ?? Buffer.alloc(0)), 1)?.toString("utf8") ?? ""
      for (const spanBytes of bytesOf(ss, 2)) {
        const s = fields(spanBytes)
        const parent = firstBytes(s, 4)
        const status = fields(firstBytes(s, 15) ?? Buffer.alloc(0))
        spans.push({
          resource,
          scope,
          traceId: firstBytes(s, 1)!.toString("hex"),
          spanId: firstBytes(s, 2)!.toString("hex"),
          parentSpanId: parent === undefined ? undefined : parent.toString("hex"),
          name: firstBytes(s, 5)!.toString("utf8"),
          kind: Number(firstNumber(s, 6) ?? 0n),
          attributes: keyValues(bytesOf(s, 9)),
          links: bytesOf(s, 13).map((link) => {
            const l = fields(link)
            return { traceId: firstBytes(l, 1)!.toString("hex"), spanId: firstBytes(l, 2)!.toString("hex") }
          }),
          status: Number(firstNumber(status, 3) ?? 0n),
          events: bytesOf(s, 11).map((event) => firstBytes(fields(event), 2)!.toString("utf8"))
        })
      }
    }
  }
  return spans
}
