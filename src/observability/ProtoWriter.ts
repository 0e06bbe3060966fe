/** A protobuf writer for the OTLP encoder (`OtlpEncoding.ts`). */

export const varintSize = (value: number) => (value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5)

const hexValue = (code: number) =>
  code >= 48 && code <= 57 ? code - 48 : code >= 97 && code <= 102 ? code - 87 : code >= 65 && code <= 70 ? code - 55 : 0

/** A growable protobuf writer; a length-delimited field reserves one length byte and shifts when it needs more. */
export class ProtoWriter {
  buffer: Buffer
  pos = 0
  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(size)
  }
  reset() {
    this.pos = 0
  }
  bytes() {
    return this.buffer.subarray(0, this.pos)
  }
  private ensure(size: number) {
    if (this.pos + size <= this.buffer.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.pos + size))
    this.buffer.copy(next, 0, 0, this.pos)
    this.buffer = next
  }
  tag(field: number, wireType: number) {
    this.uint32((field << 3) | wireType)
  }
  uint32(value: number) {
    this.ensure(5)
    let v = value >>> 0
    while (v > 0x7f) {
      this.buffer[this.pos++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.buffer[this.pos++] = v
  }
  /** An int64 varint from a JS integer (two's complement for negatives), as the SDK writes `int_value`. */
  int64(value: number) {
    if (value >= 0 && value <= 0xffffffff) return this.uint32(value)
    let low: number
    let high: number
    const abs = Math.abs(value)
    low = abs >>> 0
    high = (abs / 0x100000000) >>> 0
    if (value < 0) {
      low = ~low >>> 0
      high = ~high >>> 0
      low = (low + 1) >>> 0
      if (low === 0) high = (high + 1) >>> 0
    }
    this.ensure(10)
    while (high > 0 || low > 0x7f) {
      this.buffer[this.pos++] = (low & 0x7f) | 0x80
      low = ((low >>> 7) | (high << 25)) >>> 0
      high >>>= 7
    }
    this.buffer[this.pos++] = low & 0x7f
  }
  fixed32(value: number) {
    this.ensure(4)
    this.pos = this.buffer.writeUInt32LE(value >>> 0, this.pos)
  }
  fixed64(value: bigint) {
    this.ensure(8)
    this.pos = this.buffer.writeBigUInt64LE(BigInt.asUintN(64, value), this.pos)
  }
  double(value: number) {
    this.ensure(8)
    this.pos = this.buffer.writeDoubleLE(value, this.pos)
  }
  /** Starts a length-delimited value; `end` with what this returns. */
  begin() {
    this.ensure(1)
    return this.pos++
  }
  end(at: number) {
    const length = this.pos - at - 1
    if (length < 0x80) {
      this.buffer[at] = length
      return
    }
    const size = varintSize(length)
    this.ensure(size - 1)
    this.buffer.copyWithin(at + size, at + 1, this.pos)
    this.pos += size - 1
    let v = length
    let i = at
    while (v > 0x7f) {
      this.buffer[i++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.buffer[i] = v
  }
  /** UTF-8; short ASCII strings (names, keys, ids) are copied here, cheaper than a call into `Buffer#write`. */
  string(value: string) {
    const length = value.length
    this.ensure(4 + length * 3)
    if (length < 0x80) {
      const buffer = this.buffer
      const start = this.pos + 1
      let i = 0
      for (; i < length; i++) {
        const code = value.charCodeAt(i)
        if (code >= 0x80) break
        buffer[start + i] = code
      }
      if (i === length) {
        buffer[this.pos] = length
        this.pos = start + length
        return
      }
    }
    const at = this.begin()
    this.pos += this.buffer.write(value, this.pos, "utf8")
    this.end(at)
  }
  /** A W3C id (hex) as bytes; a character that is not hex counts as 0. */
  hexId(hex: string) {
    const size = hex.length >>> 1
    this.ensure(1 + size)
    const buffer = this.buffer
    buffer[this.pos++] = size
    for (let i = 0; i < size; i++) {
      buffer[this.pos++] = (hexValue(hex.charCodeAt(2 * i)) << 4) | hexValue(hex.charCodeAt(2 * i + 1))
    }
  }
  raw(bytes: Uint8Array) {
    this.ensure(bytes.length)
    this.buffer.set(bytes, this.pos)
    this.pos += bytes.length
  }
}
