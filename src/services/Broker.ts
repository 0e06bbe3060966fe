import amqp from "amqplib"
import type { ChannelModel, ConfirmChannel, Options } from "amqplib"
import { Context, Deferred, Duration, Effect, Layer, Redacted, Schedule, Schema } from "effect"
import { AppConfig, type QueueType } from "./AppConfig.ts"
import { makeDeadlines } from "./Deadlines.ts"
import { DELIVERY_LANES } from "./Lanes.ts"
import { throttledLog } from "./LogThrottle.ts"

/** Unconfirmed messages allowed per channel (lane) before a publish waits its turn. */
export const MAX_UNCONFIRMED_PER_CHANNEL = 1000
/** A publish that has no confirm after this long counts as failed (the broker may be blocked). */
export const CONFIRM_TIMEOUT = Duration.seconds(10)
export const HEARTBEAT_SECONDS = 15
export const CONNECT_TIMEOUT_MS = 5_000
/** Reconnect after 0.5 s, 1 s, … capped at 10 s, with jitter. */
export const reconnectSchedule = Schedule.min([Schedule.exponential("500 millis"), Schedule.spaced("10 seconds")]).pipe(
  Schedule.jittered
)

/** While the broker stays away, its failed reconnects are logged once per this interval. */
export const BROKER_FAULT_LOG_INTERVAL_MS = 30_000

/**
 * amqplib's muxer writes each frame of a round of channel buffers as its own socket write (one
 * syscall, and one wake-up of the broker, per message); corking the socket for the round makes
 * them one `writev`. Left alone when amqplib's internals are not the ones this was written for.
 */
export const coalesceWrites = (model: ChannelModel) => {
  const connection = (model as unknown as { connection?: { muxer?: unknown; stream?: unknown } }).connection
  const muxer = connection?.muxer as { _readIncoming?: () => void } | undefined
  const stream = connection?.stream as { cork?: () => void; uncork?: () => void } | undefined
  const round = muxer?._readIncoming
  if (muxer === undefined || stream === undefined || typeof round !== "function" || typeof stream.cork !== "function" || typeof stream.uncork !== "function") return
  muxer._readIncoming = function(this: unknown) {
    stream.cork!()
    try {
      round.call(muxer)
    } finally {
      stream.uncork!()
    }
  }
}

export const deadLetterQueue = (queue: string) => `${queue}.dlq`

/**
 * No positive confirm: `unavailable` (no connection or no confirm in time) is sent again once connected,
 * uncounted; `returned`/`nacked`/`refused` (also a refused queue declare) count against the retry budget.
 */
export class PublishError extends Schema.TaggedError<PublishError>()("PublishError", {
  reason: Schema.Literals(["unavailable", "returned", "nacked", "refused"]),
  detail: Schema.String
}) {}

export interface OutgoingMessage {
  readonly queue: string
  readonly body: Buffer
  readonly properties: Options.Publish & { readonly messageId: string }
}

export interface BrokerStatus {
  readonly connected: boolean
  readonly blocked: boolean
  readonly error?: string
}

export interface QueueCounts {
  readonly messages: number
  readonly consumers: number
}

interface Live {
  readonly connection: ChannelModel
  readonly channels: ReadonlyArray<PublishChannel>
  /** Queues declared on this connection; cleared with it. */
  readonly declared: Set<string>
  topology: ConfirmChannel | undefined
  closed: boolean
}

interface PublishChannel {
  readonly channel: ConfirmChannel
  /** Messages written and not yet confirmed; at `MAX_UNCONFIRMED_PER_CHANNEL` a send waits in `waiting`. */
  unconfirmed: number
  readonly waiting: Array<() => void>
  /** messageIds the broker returned (mandatory, no queue): their confirm is a failure. */
  readonly returned: Set<string>
  /** Set while the socket buffer is full; publishes wait for `drain`. */
  drained: Promise<void> | undefined
}

const queueArguments = (queue: string, type: QueueType, deadLetter: boolean): Options.AssertQueue => ({
  durable: true,
  arguments: {
    "x-queue-type": type,
    ...(deadLetter ? { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": deadLetterQueue(queue) } : {})
  }
})

// amqplib takes the heartbeat from the URL; keep one the operator set.
const withHeartbeat = (url: string) => {
  const parsed = new URL(url)
  if (!parsed.searchParams.has("heartbeat")) parsed.searchParams.set("heartbeat", String(HEARTBEAT_SECONDS))
  return parsed.href
}

// The channel-closing replies that say the declare itself is wrong: ACCESS_REFUSED, RESOURCE_LOCKED, PRECONDITION_FAILED.
const REFUSAL_CODES = new Set([403, 405, 406])
const isRefusal = (error: unknown) =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "number" && REFUSAL_CODES.has(error.code)

const describe = (error: unknown) => error instanceof Error ? error.message : String(error)

/**
 * The RabbitMQ connection, its topology and reconnection. It never fails the process: a lost broker
 * is a state that `status` reports and publishes see as `unavailable`.
 */
export class Broker extends Context.Service<Broker, {
  /**
   * Writes one persistent, mandatory message on the channel of `lane` (sends of one lane reach the
   * broker in the order they were made) and returns the wait for its own confirm.
   */
  send(message: OutgoingMessage, lane: number): Effect.Effect<Effect.Effect<void, PublishError>, PublishError>
  /** Succeeds at once while connected, else when the next connection is up. */
  readonly awaitConnected: Effect.Effect<void>
  /** Declares a worker app's queue and its dead-letter queue (idempotent). */
  declareWorkerQueue(queue: string): Effect.Effect<void, PublishError>
  /** Message and consumer counts of a queue, by a passive declare. */
  queueCounts(queue: string): Effect.Effect<QueueCounts | undefined, PublishError>
  readonly status: Effect.Effect<BrokerStatus>
}>()("chatico/services/Broker") {
  static readonly layer = Layer.effect(
    Broker,
    Effect.gen(function*() {
      const config = yield* AppConfig
      let live: Live | undefined
      let connected = yield* Deferred.make<void>()
      let blocked = false
      let lastError: string | undefined = "connecting"

      // A queue declared on this connection is not declared again (checked before any promise: it is
      // on every publish). A worker queue's dead-letter queue is declared with it.
      const declareOn = (current: Live, queue: string, deadLetter: boolean) =>
        current.declared.has(queue) ? Effect.void : Effect.tryPromise({
          try: async () => {
            const channel = current.topology ?? await openTopologyChannel(current)
            if (deadLetter) {
              await channel.assertQueue(deadLetterQueue(queue), queueArguments(deadLetterQueue(queue), config.queueType, false))
              current.declared.add(deadLetterQueue(queue))
            }
            await channel.assertQueue(queue, queueArguments(queue, config.queueType, deadLetter))
            current.declared.add(queue)
          },
          catch: (error) =>
            new PublishError({ reason: isRefusal(error) ? "refused" : "unavailable", detail: `declaring ${queue}: ${describe(error)}` })
        })

      // Declarations get their own channel: a refused declare (e.g. a queue that
      // exists with other arguments) closes only that channel.
      const openTopologyChannel = async (current: Live) => {
        const channel = await current.connection.createConfirmChannel()
        channel.on("error", () => {})
        channel.on("close", () => {
          if (current.topology === channel) current.topology = undefined
        })
        current.topology = channel
        return channel
      }

      const openPublishChannel = async (connection: ChannelModel): Promise<PublishChannel> => {
        const channel = await connection.createConfirmChannel()
        const entry: PublishChannel = {
          channel,
          unconfirmed: 0,
          waiting: [],
          returned: new Set(),
          drained: undefined
        }
        channel.on("error", () => {})
        channel.on("return", (message) => {
          const id = message.properties.messageId
          if (typeof id === "string") entry.returned.add(id)
        })
        return entry
      }

      const connect = Effect.tryPromise({
        try: async () => {
          const connection = await amqp.connect(withHeartbeat(Redacted.value(config.rabbitmqUrl)), {
            noDelay: true,
            timeout: CONNECT_TIMEOUT_MS,
            clientProperties: { connection_name: "chatico-mapper" }
          })
          coalesceWrites(connection)
          try {
            const channels = await Promise.all(
              Array.from({ length: DELIVERY_LANES }, () => openPublishChannel(connection))
            )
            const current: Live = { connection, channels, declared: new Set(), topology: undefined, closed: false }
            await openTopologyChannel(current)
            return current
          } catch (error) {
            await connection.close().catch(() => {})
            throw error
          }
        },
        catch: (error) => new PublishError({ reason: "unavailable", detail: describe(error) })
      })

      const logUnavailable = throttledLog(BROKER_FAULT_LOG_INTERVAL_MS)
      // One connection at a time: connect, declare the fixed topology, wait
      // until it closes, then reconnect with backoff.
      const maintain = Effect.gen(function*() {
        const current = yield* connect
        yield* declareOn(current, config.unroutableQueue, false)
        const closed = new Promise<string>((resolve) => {
          current.connection.on("error", (error: Error) => {
            lastError = error.message
          })
          current.connection.on("close", (error?: Error) => resolve(error?.message ?? "connection closed"))
          current.connection.on("blocked", (reason: string) => {
            blocked = true
            lastError = `broker blocked publishing: ${reason}`
          })
          current.connection.on("unblocked", () => {
            blocked = false
          })
        })
        live = current
        blocked = false
        lastError = undefined
        yield* Deferred.succeed(connected, undefined)
        yield* Effect.logInfo("connected to RabbitMQ")
        const reason = yield* Effect.promise(() => closed).pipe(
          Effect.onInterrupt(() => Effect.promise(() => current.connection.close().catch(() => {})))
        )
        current.closed = true
        live = undefined
        connected = yield* Deferred.make<void>()
        lastError = reason
        return yield* new PublishError({ reason: "unavailable", detail: reason })
      }).pipe(
        Effect.tapError((error) =>
          logUnavailable("unavailable", (suppressed) =>
            Effect.logWarning("RabbitMQ unavailable, reconnecting").pipe(
              Effect.annotateLogs({ error: error.detail, attempts_not_logged: suppressed })
            ))
        ),
        Effect.catchTag("PublishError", (error) =>
          Effect.sync(() => {
            lastError = error.detail
            return error
          }).pipe(Effect.flatMap(Effect.fail))
        ),
        Effect.retry(reconnectSchedule),
        Effect.forever
      )
      yield* Effect.forkScoped(maintain)

      const unavailable = (detail: string) => new PublishError({ reason: "unavailable", detail })
      const confirms = yield* makeDeadlines<void, PublishError>(CONFIRM_TIMEOUT, () => unavailable("no publisher confirm in time"))

      // A lane's unconfirmed messages are bounded: a send waits for a permit, freed by a confirm.
      const acquirePermit = (entry: PublishChannel) =>
        entry.unconfirmed < MAX_UNCONFIRMED_PER_CHANNEL
          ? Effect.sync(() => {
            entry.unconfirmed++
          })
          : Effect.callback<void>((resume) => {
            const wake = () => {
              entry.unconfirmed++
              resume(Effect.void)
            }
            entry.waiting.push(wake)
            return Effect.sync(() => {
              const at = entry.waiting.indexOf(wake)
              if (at !== -1) entry.waiting.splice(at, 1)
            })
          })
      const releasePermit = (entry: PublishChannel) => {
        entry.unconfirmed--
        entry.waiting.shift()?.()
      }

      const send = Effect.fnUntraced(function*(message: OutgoingMessage, lane: number) {
        const current = live
        if (current === undefined) return yield* unavailable(lastError ?? "not connected")
        yield* declareOn(current, message.queue, message.queue !== config.unroutableQueue && !message.queue.endsWith(".dlq"))
        const entry = current.channels[lane % current.channels.length]!
        // A full socket buffer: wait for `drain` before writing more.
        if (entry.drained !== undefined) yield* Effect.promise(() => entry.drained ?? Promise.resolve())
        yield* acquirePermit(entry)
        if (current.closed) {
          releasePermit(entry)
          return yield* unavailable("connection closed")
        }
        const confirmed = Deferred.makeUnsafe<void, PublishError>()
        try {
          const ok = entry.channel.publish("", message.queue, message.body, {
            ...message.properties,
            persistent: true,
            mandatory: true
          }, (error) => {
            releasePermit(entry)
            const returned = entry.returned.delete(message.properties.messageId)
            if (error !== null && error !== undefined) {
              const detail = describe(error)
              Deferred.doneUnsafe(confirmed, Effect.fail(new PublishError({ reason: detail.includes("closed") ? "unavailable" : "nacked", detail })))
            } else if (returned) {
              // The queue is gone (deleted behind our back): declare it again on the retry.
              current.declared.delete(message.queue)
              Deferred.doneUnsafe(confirmed, Effect.fail(new PublishError({ reason: "returned", detail: `no queue ${message.queue}` })))
            } else {
              Deferred.doneUnsafe(confirmed, Effect.void)
            }
          })
          if (!ok && entry.drained === undefined) {
            entry.drained = new Promise((resolve) =>
              entry.channel.once("drain", () => {
                entry.drained = undefined
                resolve()
              })
            )
          }
        } catch (error) {
          releasePermit(entry)
          // A closed channel throws; anything else (a frame too large to encode) is this message's fault.
          const detail = describe(error)
          return yield* (current.closed || detail.includes("closed") ? unavailable(detail) : new PublishError({ reason: "refused", detail }))
        }
        return confirms.await(confirmed)
      })

      const declareWorkerQueue = Effect.fn("Broker.declareWorkerQueue")(function*(queue: string) {
        const current = live
        if (current === undefined) return yield* unavailable(lastError ?? "not connected")
        current.declared.delete(queue)
        yield* declareOn(current, queue, true)
      })

      const queueCounts = Effect.fn("Broker.queueCounts")(function*(queue: string) {
        const current = live
        if (current === undefined) return yield* unavailable(lastError ?? "not connected")
        return yield* Effect.tryPromise({
          try: async (): Promise<QueueCounts | undefined> => {
            // A passive declare of a missing queue closes the channel: use a throwaway one.
            const channel = await current.connection.createChannel()
            channel.on("error", () => {})
            try {
              const reply = await channel.checkQueue(queue)
              return { messages: reply.messageCount, consumers: reply.consumerCount }
            } catch (error) {
              if (describe(error).includes("NOT_FOUND")) return undefined
              throw error
            } finally {
              await channel.close().catch(() => {})
            }
          },
          catch: (error) => unavailable(describe(error))
        })
      })

      const status = Effect.sync((): BrokerStatus => ({
        connected: live !== undefined,
        blocked,
        ...(lastError === undefined ? {} : { error: lastError })
      }))

      return Broker.of({
        send,
        awaitConnected: Effect.suspend(() => Deferred.await(connected)),
        declareWorkerQueue,
        queueCounts,
        status
      })
    })
  )
}
