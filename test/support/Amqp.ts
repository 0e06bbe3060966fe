import amqp from "amqplib"
import type { Channel, ChannelModel, ConsumeMessage, MessageProperties } from "amqplib"
import { Context, Effect, Layer } from "effect"

export const AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"

/** A message as a worker app sees it. */
export interface ReceivedMessage {
  readonly content: Buffer
  /** `content` decoded as UTF-8. */
  readonly text: string
  readonly properties: MessageProperties
  readonly redelivered: boolean
}

export interface DrainOptions {
  /** Stop once this many messages are taken (after `settleMs` more, to catch extras). */
  readonly expected: number
  /** Stop when no message arrives for this long after the previous one. */
  readonly idleMs?: number
  /** Stop when the first message has not arrived after this long (the pipeline may be busy with other files). */
  readonly firstMessageMs?: number
  /** After `expected` is reached, keep listening this long for messages that should not be there. */
  readonly settleMs?: number
}

/** What a consumer does with a delivery: take it and ack, take it and reject (dead-letter), or leave it. */
type Decision = "ack" | "reject" | "skip"

const PREFETCH = 2000

const toReceived = (message: ConsumeMessage): ReceivedMessage => ({
  content: message.content,
  text: message.content.toString("utf8"),
  properties: message.properties,
  redelivered: message.fields.redelivered
})

const openChannel = async (connection: ChannelModel): Promise<Channel> => {
  const channel = await connection.createChannel()
  // A refused operation closes the channel with an error; the awaiting promise reports it.
  channel.on("error", () => {})
  return channel
}

/**
 * Consumes `queue`, deciding for each delivery; returns the taken ones. Skipped
 * deliveries are held unacknowledged while consuming (so they are not seen again)
 * and requeued at the end, which leaves other tests' messages where they were.
 */
const consume = async (
  connection: ChannelModel,
  queue: string,
  decide: (message: ReceivedMessage) => Decision,
  { expected, idleMs = 2000, firstMessageMs = 10_000, settleMs = 300 }: DrainOptions
): Promise<ReadonlyArray<ReceivedMessage>> => {
  const channel = await openChannel(connection)
  await channel.prefetch(PREFETCH)
  const taken: Array<ReceivedMessage> = []
  const skipped: Array<ConsumeMessage> = []
  let done = false
  let timer: NodeJS.Timeout | undefined
  let consumerTag: string | undefined
  let failure: unknown
  const finished = new Promise<void>((resolve) => {
    const finish = () => {
      done = true
      clearTimeout(timer)
      resolve()
    }
    const arm = (ms: number) => {
      clearTimeout(timer)
      timer = setTimeout(finish, ms)
    }
    arm(Math.max(idleMs, firstMessageMs))
    channel.consume(queue, (message) => {
      if (message === null) return finish()
      if (done) return // requeued when the channel closes
      const received = toReceived(message)
      const decision = decide(received)
      if (decision === "skip") skipped.push(message)
      else {
        taken.push(received)
        if (decision === "ack") channel.ack(message)
        else channel.nack(message, false, false)
      }
      arm(taken.length >= expected ? settleMs : idleMs)
    }).then((reply) => {
      consumerTag = reply.consumerTag
    }, (error: unknown) => {
      failure = error
      finish()
    })
  })
  try {
    await finished
    if (failure !== undefined) throw failure
    if (consumerTag !== undefined) await channel.cancel(consumerTag)
    for (const message of skipped) channel.nack(message, false, true)
  } finally {
    await channel.close().catch(() => {})
  }
  return taken
}

/** Takes (and acks) messages until `expected` arrived or the queue stays quiet. */
export const drainQueue = (connection: ChannelModel, queue: string, options: DrainOptions) =>
  consume(connection, queue, () => "ack", options)

/** Rejects messages without requeue, as a worker app refusing them would (they dead-letter). */
export const rejectMessages = (connection: ChannelModel, queue: string, options: DrainOptions) =>
  consume(connection, queue, () => "reject", options)

/** Takes only the messages `predicate` accepts, leaving every other one in the (shared) queue. */
export const takeMatching = (
  connection: ChannelModel,
  queue: string,
  predicate: (message: ReceivedMessage) => boolean,
  options: DrainOptions
) => consume(connection, queue, (message) => (predicate(message) ? "ack" : "skip"), options)

/** Ready messages in a queue, or `undefined` when it does not exist. */
export const queueMessageCount = async (connection: ChannelModel, queue: string): Promise<number | undefined> => {
  const channel = await openChannel(connection)
  try {
    return (await channel.checkQueue(queue)).messageCount
  } catch (error) {
    if (error instanceof Error && error.message.includes("NOT_FOUND")) return undefined
    throw error
  } finally {
    await channel.close().catch(() => {})
  }
}

/** Deletes queues (a missing one is fine). */
export const deleteQueues = async (connection: ChannelModel, names: Iterable<string>): Promise<void> => {
  for (const name of names) {
    const channel = await openChannel(connection)
    try {
      await channel.deleteQueue(name)
    } finally {
      await channel.close().catch(() => {})
    }
  }
}

export const connectAmqp = Effect.acquireRelease(
  Effect.promise(() => amqp.connect(AMQP_URL)),
  (connection) => Effect.promise(() => connection.close().catch(() => {}))
)

/**
 * RabbitMQ as the tests' worker apps see it: one connection per test file, a
 * queue prefix of its own, and every queue named through `queueName` (with its
 * `.dlq`) deleted when the layer closes.
 */
export class Amqp extends Context.Service<Amqp, {
  readonly prefix: string
  readonly connection: ChannelModel
  /** `<prefix><label>`, remembered for deletion along with its dead-letter queue. */
  queueName(label: string): string
  drainQueue(queue: string, options: DrainOptions): Effect.Effect<ReadonlyArray<ReceivedMessage>>
  rejectMessages(queue: string, options: DrainOptions): Effect.Effect<ReadonlyArray<ReceivedMessage>>
  takeMatching(
    queue: string,
    predicate: (message: ReceivedMessage) => boolean,
    options: DrainOptions
  ): Effect.Effect<ReadonlyArray<ReceivedMessage>>
  queueMessageCount(queue: string): Effect.Effect<number | undefined>
  deleteQueues(names: Iterable<string>): Effect.Effect<void>
}>()("test/Amqp") {
  static readonly layer = (label: string) =>
    Layer.effect(
      Amqp,
      Effect.gen(function*() {
        const prefix = `t.${label}.${Math.random().toString(36).slice(2, 8)}.`
        const connection = yield* connectAmqp
        const names = new Set<string>()
        // Registered after the connection, so it runs before the connection closes.
        yield* Effect.addFinalizer(() =>
          Effect.promise(() => deleteQueues(connection, [...names].flatMap((name) => [name, `${name}.dlq`])))
        )
        return Amqp.of({
          prefix,
          connection,
          queueName: (queueLabel) => {
            const name = `${prefix}${queueLabel}`
            names.add(name)
            return name
          },
          drainQueue: (queue, options) => Effect.promise(() => drainQueue(connection, queue, options)),
          rejectMessages: (queue, options) => Effect.promise(() => rejectMessages(connection, queue, options)),
          takeMatching: (queue, predicate, options) =>
            Effect.promise(() => takeMatching(connection, queue, predicate, options)),
          queueMessageCount: (queue) => Effect.promise(() => queueMessageCount(connection, queue)),
          deleteQueues: (queues) => Effect.promise(() => deleteQueues(connection, queues))
        })
      })
    )
}
