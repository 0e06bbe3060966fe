/** RabbitMQ for the bench: the worker-app queues, and the consumers that count (and check) deliveries. */
import { performance } from "node:perf_hooks"
import amqp from "amqplib"
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib"
import { Samples } from "./load.ts"

export type QueueType = "quorum" | "classic"

/** The queue shape the contract describes: durable, dead-lettering to `<queue>.dlq`. */
export const declareAppQueue = async (channel: Channel, queue: string, queueType: QueueType) => {
  await channel.assertQueue(`${queue}.dlq`, { durable: true, arguments: { "x-queue-type": queueType } })
  await channel.assertQueue(queue, {
    durable: true,
    arguments: {
      "x-queue-type": queueType,
      "x-dead-letter-exchange": "",
      "x-dead-letter-routing-key": `${queue}.dlq`
    }
  })
}

/** Message count of a queue, or undefined when it does not exist (uses a throwaway channel). */
export const queueDepth = async (connection: ChannelModel, queue: string): Promise<number | undefined> => {
  const channel = await connection.createChannel()
  channel.on("error", () => {})
  try {
    return (await channel.checkQueue(queue)).messageCount
  } catch {
    return undefined
  } finally {
    await channel.close().catch(() => {})
  }
}

export const deleteQueues = async (url: string, queues: ReadonlyArray<string>) => {
  const connection = await amqp.connect(url)
  connection.on("error", () => {})
  let deleted = 0
  try {
    for (const queue of queues) {
      const channel = await connection.createChannel()
      channel.on("error", () => {})
      try {
        await channel.deleteQueue(queue)
        deleted++
      } catch {
        // already gone
      } finally {
        await channel.close().catch(() => {})
      }
    }
  } finally {
    await connection.close().catch(() => {})
  }
  return deleted
}

export interface ConsumerStats {
  readonly unique: number
  readonly duplicates: number
  readonly redelivered: number
  readonly withoutMessageId: number
  /** Messages whose x-owner-id header names another owner than the queue's app. */
  readonly misrouted: number
  /** With `mediaOwners`: messages in the queue of another app than their media's owner's. */
  readonly misroutedByMedia: number
  /** With `mediaOwners`: messages without a media_id, or with one the map does not know. */
  readonly unknownMedia: number
  /** performance.now() of the latest delivery (0 when none). */
  readonly lastDelivery: number
  /** Unique deliveries that arrived before the given performance.now() instant. */
  readonly uniqueBefore: (instant: number) => number
  /** End-to-end latency samples (ms): arrival minus the body's received_at (or the timestamp property). */
  readonly e2eLatencies: () => Float64Array
}

export interface Consumers {
  readonly stats: () => ConsumerStats
  readonly connection: ChannelModel
  readonly close: () => Promise<void>
}

const RECEIVED_AT = Buffer.from(`"received_at":"`)

/** Delivery time of a message, from the body's received_at (ISO) or the timestamp property. */
const sentAt = (msg: ConsumeMessage): number | undefined => {
  const at = msg.content.indexOf(RECEIVED_AT)
  if (at >= 0) {
    const start = at + RECEIVED_AT.length
    const end = msg.content.indexOf(34 /* " */, start)
    if (end > start && end - start < 40) {
      const parsed = Date.parse(msg.content.toString("latin1", start, end))
      if (!Number.isNaN(parsed)) return parsed
    }
  }
  const ts = msg.properties.timestamp
  if (typeof ts === "number" && ts > 0) return ts > 1e12 ? ts : ts * 1000
  return undefined
}

const MEDIA_ID = Buffer.from(`"media_id":"`)

/** The message's top-level `media_id` (the service and the baseline write it before `value`). */
const mediaIdOf = (content: Buffer): string | undefined => {
  const at = content.indexOf(MEDIA_ID)
  if (at < 0) return undefined
  const start = at + MEDIA_ID.length
  const end = content.indexOf(34 /* " */, start)
  return end > start && end - start <= 64 ? content.toString("latin1", start, end) : undefined
}

export const startConsumers = async (
  url: string,
  queues: ReadonlyArray<{ readonly queue: string; readonly owner: string }>,
  options: {
    readonly prefetch?: number
    readonly ackEvery?: number
    /** media id → owner: each message's `media_id` must belong to its queue's owner. */
    readonly mediaOwners?: ReadonlyMap<string, string>
  } = {}
): Promise<Consumers> => {
  const mediaOwners = options.mediaOwners
  const prefetch = options.prefetch ?? 1000
  const ackEvery = options.ackEvery ?? 500
  const connection = await amqp.connect(url)
  connection.on("error", (err) => console.error(`[bench] consumer connection error: ${err.message}`))
  const channel = await connection.createChannel()
  channel.on("error", (err) => console.error(`[bench] consumer channel error: ${err.message}`))
  await channel.prefetch(prefetch)

  const seen = new Set<string>()
  let duplicates = 0
  let redelivered = 0
  let withoutMessageId = 0
  let misrouted = 0
  let misroutedByMedia = 0
  let unknownMedia = 0
  let lastDelivery = 0
  let unacked = 0
  let lastUnacked: ConsumeMessage | undefined
  // arrival time (performance.now) of each unique delivery, for windowed rates
  const arrivals = new Samples()
  const e2e = new Samples()

  const onMessage = (owner: string) => (msg: ConsumeMessage | null) => {
    if (msg === null) return
    const now = performance.now()
    lastDelivery = now
    if (msg.fields.redelivered) redelivered++
    const id = msg.properties.messageId
    if (typeof id !== "string" || id.length === 0) {
      withoutMessageId++
      arrivals.push(now)
    } else if (seen.has(id)) {
      duplicates++
    } else {
      seen.add(id)
      arrivals.push(now)
      const at = sentAt(msg)
      if (at !== undefined) e2e.push(Date.now() - at)
    }
    const header = msg.properties.headers?.["x-owner-id"]
    if (header !== undefined && String(header) !== owner) misrouted++
    if (mediaOwners !== undefined) {
      const mediaId = mediaIdOf(msg.content)
      const expected = mediaId === undefined ? undefined : mediaOwners.get(mediaId)
      if (expected === undefined) unknownMedia++
      else if (expected !== owner) misroutedByMedia++
    }
    lastUnacked = msg
    if (++unacked >= ackEvery) {
      channel.ack(msg, true)
      unacked = 0
      lastUnacked = undefined
    }
  }
  const flush = setInterval(() => {
    if (lastUnacked !== undefined) {
      channel.ack(lastUnacked, true)
      unacked = 0
      lastUnacked = undefined
    }
  }, 200)

  for (const { queue, owner } of queues) {
    await channel.consume(queue, onMessage(owner), { noAck: false })
  }

  const stats = (): ConsumerStats => ({
    unique: seen.size + withoutMessageId,
    duplicates,
    redelivered,
    withoutMessageId,
    misrouted,
    misroutedByMedia,
    unknownMedia,
    lastDelivery,
    uniqueBefore: (instant: number) => {
      // arrivals are in increasing order: binary search
      const values = arrivals.values()
      let lo = 0
      let hi = values.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (values[mid]! < instant) lo = mid + 1
        else hi = mid
      }
      return lo
    },
    e2eLatencies: () => e2e.values()
  })

  const close = async () => {
    clearInterval(flush)
    if (lastUnacked !== undefined) {
      try {
        channel.ack(lastUnacked, true)
      } catch {
        // channel already closed
      }
    }
    await channel.close().catch(() => {})
    await connection.close().catch(() => {})
  }
  return { stats, connection, close }
}
