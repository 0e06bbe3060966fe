import type { Tracer } from "effect"
import { writeSpan } from "./OtlpEncoding.ts"
import { ProtoWriter } from "./ProtoWriter.ts"

/** Batch limits, from the standard OTEL_BSP_* variables (OpenTelemetry's defaults). */
export interface BatchLimits {
  /** Spans encoded and not yet answered by the collector; more are dropped (OTEL_BSP_MAX_QUEUE_SIZE). */
  readonly maxQueueSize: number
  /** Spans per export request (OTEL_BSP_MAX_EXPORT_BATCH_SIZE). */
  readonly maxExportBatchSize: number
  /** Milliseconds a started batch waits for more spans (OTEL_BSP_SCHEDULE_DELAY). */
  readonly scheduledDelayMillis: number
  /** Milliseconds shutdown waits for the last exports (OTEL_BSP_EXPORT_TIMEOUT). */
  readonly exportTimeoutMillis: number
}

export interface ExportCounts {
  exported: number
  dropped: number
  failed: number
}

/** Sends one request's bytes; `done` is told whether the collector took them. */
export type Send = (request: Uint8Array, spans: number, done: (ok: boolean, error?: unknown) => void) => void

export interface Transport {
  readonly send: Send
  readonly shutdown: () => Promise<void>
}

/**
 * Encodes ended spans into batches, sent when full or due. Spans beyond `maxQueueSize` are dropped
 * and counted: tracing never holds up the webhooks.
 */
export class SpanBatcher {
  private readonly writer = new ProtoWriter(64 * 1024)
  private batched = 0
  private inFlight = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private readonly pending = new Set<Promise<void>>()
  readonly counts: ExportCounts = { exported: 0, dropped: 0, failed: 0 }
  lastError: unknown = undefined

  private readonly envelope: (spans: Uint8Array) => Uint8Array
  private readonly send: Send
  private readonly limits: BatchLimits
  constructor(envelope: (spans: Uint8Array) => Uint8Array, send: Send, limits: BatchLimits) {
    this.envelope = envelope
    this.send = send
    this.limits = limits
  }

  readonly add = (span: Tracer.Span) => {
    if (this.batched + this.inFlight >= this.limits.maxQueueSize) {
      this.counts.dropped++
      return
    }
    const start = this.writer.pos
    try {
      writeSpan(this.writer, span)
    } catch (error) {
      // A span that cannot be encoded is dropped, never a failure of the request that ended it.
      this.writer.pos = start
      this.counts.dropped++
      this.lastError = error
      return
    }
    this.batched++
    if (this.batched >= this.limits.maxExportBatchSize) this.flush()
    else if (this.timer === undefined) {
      this.timer = setTimeout(this.flush, this.limits.scheduledDelayMillis)
      this.timer.unref()
    }
  }

  readonly flush = () => {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (this.batched === 0) return
    const spans = this.batched
    const request = this.envelope(this.writer.bytes())
    this.writer.reset()
    this.batched = 0
    this.inFlight += spans
    const sent = new Promise<void>((resolve) => {
      this.send(request, spans, (ok, error) => {
        this.inFlight -= spans
        if (ok) this.counts.exported += spans
        else {
          this.counts.failed += spans
          this.lastError = error
        }
        resolve()
      })
    })
    this.pending.add(sent)
    void sent.then(() => this.pending.delete(sent))
  }

  /** Sends what is batched and waits for every export in flight. */
  readonly drain = () => {
    this.flush()
    return Promise.all(this.pending).then(() => undefined)
  }
}
