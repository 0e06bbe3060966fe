import type { ChannelModel } from "amqplib"
import { Effect, type Scope } from "effect"
import { performance } from "node:perf_hooks"

/** A message as it arrived at a listening worker: its queue, body, messageId and `performance.now()`. */
export interface Arrival {
  readonly queue: string
  readonly text: string
  readonly messageId: string
  readonly at: number
}

/**
 * Consumes `queues` (acking each message) from now until the scope closes, recording every arrival
 * in order: a worker app's view of delivery order and timing across several queues.
 */
export const listen = (connection: ChannelModel, queues: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Arrival>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const channel = await connection.createChannel()
      channel.on("error", () => {})
      await channel.prefetch(5000)
      const arrivals: Array<Arrival> = []
      // The queues exist: the service declares a worker app's queue before answering its creation.
      for (const queue of queues) {
        await channel.consume(queue, (message) => {
          if (message === null) return
          arrivals.push({
            queue,
            text: message.content.toString("utf8"),
            messageId: String(message.properties.messageId),
            at: performance.now()
          })
          channel.ack(message)
        })
      }
      return { channel, arrivals }
    }),
    ({ channel }) => Effect.promise(() => channel.close().catch(() => {}))
  ).pipe(Effect.map(({ arrivals }) => arrivals))

/** Waits until `count` arrivals satisfy `where` (or `seconds` pass). */
export const arrived = (arrivals: ReadonlyArray<Arrival>, count: number, where: (a: Arrival) => boolean = () => true, seconds = 30) =>
  Effect.gen(function*() {
    for (let i = 0; i < seconds * 20; i++) {
      if (arrivals.filter(where).length >= count) return
      yield* Effect.sleep("50 millis")
    }
  })

/** The messages' ids per queue in arrival order, each id once (a redelivered duplicate dropped). */
export const orderPerQueue = (arrivals: ReadonlyArray<Arrival>) => {
  const byQueue = new Map<string, Array<string>>()
  const seen = new Set<string>()
  for (const arrival of arrivals) {
    if (seen.has(arrival.messageId)) continue
    seen.add(arrival.messageId)
    const list = byQueue.get(arrival.queue)
    if (list === undefined) byQueue.set(arrival.queue, [arrival.messageId])
    else list.push(arrival.messageId)
  }
  return byQueue
}
