import { randomUUID } from "node:crypto"
import { Context, Deferred, Duration, Effect, FiberSet, Layer, Queue } from "effect"
import type { JournaledEvent } from "../domain/JournaledEvent.ts"

/** Events held in memory (queued, publishing, or waiting for their outcome write); beyond it a key goes to backlog. */
export const LANES_CAPACITY = 20_000
/** Broker channels the keys are spread over; a key always publishes on the same one, so RabbitMQ keeps its order. */
export const DELIVERY_LANES = 4
/** A key's events handed to delivery at once: published pipelined, in order, before the next window. */
export const PIPELINE_WINDOW = 256
/** How often a delivering instance says it is alive (`delivery_instances.seen_at`). */
export const INSTANCE_HEARTBEAT = Duration.seconds(1)
/**
 * An instance not seen for this long is gone and its pending events are taken over at once; long
 * enough that a busy instance's late heartbeat is not taken for a crash (README, "Guarantees").
 */
export const INSTANCE_GONE_AFTER_SECONDS = 10
/** Backlog keys handed to the journal reader at once. */
export const BACKLOG_KEYS_PER_READ = 200

/** The lane of an order key (FNV-1a), stable across restarts and instances. */
export const laneOf = (key: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193)
  return (hash >>> 0) % DELIVERY_LANES
}

/** Publishes a key's events in order and returns once each has its outcome. */
export type Deliver = (events: ReadonlyArray<JournaledEvent>, lane: number) => Effect.Effect<void>

interface KeyState {
  readonly key: string
  readonly lane: number
  readonly queue: Array<JournaledEvent>
  head: number
  /** A fiber is publishing this key's events, one at a time. */
  running: boolean
  /** This key's next events are read back from the journal in journal order, not taken live. */
  backlog: boolean
  /** Live events skipped while in backlog (the journal has them): a reader that began earlier must read again. */
  skipped: number
}

/** A backlog key as the journal reader sees it: `mark` tells `settle` whether live events were skipped since. */
export interface BacklogKey {
  readonly key: string
  readonly mark: number
}

/** An event whose outcome is recorded, after `attempts` publishes. */
export interface Settled {
  readonly eventId: string
  readonly attempts: number
}

/**
 * Per order key (`entry[].id`) a FIFO of journaled events, published in order; keys in parallel. A key
 * that cannot go live (lanes full, an older event held elsewhere, a replay) goes to backlog for recovery.
 */
export class Lanes extends Context.Service<Lanes, {
  /** Live events just committed, in commit order; never waits. */
  offer(events: ReadonlyArray<JournaledEvent>): Effect.Effect<void>
  /** Puts keys in backlog: their pending events will be read from the journal, in order. */
  backlog(keys: Iterable<string>): Effect.Effect<void>
  /** Waits until some key is in backlog, then returns up to `BACKLOG_KEYS_PER_READ` of them. */
  readonly backlogKeys: Effect.Effect<ReadonlyArray<BacklogKey>>
  /**
   * Runs a read of the journal whose events `feed` then takes: an event released while it runs, read
   * with fewer attempts than its outcome has, is the row as it was before that outcome committed,
   * and is skipped (it was delivered). Read again with as many (a replay put it back to pending), it
   * is taken. One read at a time.
   */
  reading<A, E, R>(read: Effect.Effect<A, E, R>): Effect.Effect<A, E, R>
  /** Events read back from the journal for a backlog key, in journal order (held ones are skipped). */
  feed(key: string, events: ReadonlyArray<JournaledEvent>): Effect.Effect<void>
  /** The reader found nothing more for `key`: it leaves backlog unless live events were skipped since `mark`. */
  settle(key: BacklogKey): Effect.Effect<boolean>
  /** Events that may still be taken before the lanes are full. */
  readonly room: Effect.Effect<number>
  /** The events queued in `event`'s key after the window it is in (they wait for it). */
  queuedBehind(event: JournaledEvent): ReadonlyArray<JournaledEvent>
  /** Their outcome is recorded (after `attempts` publishes): they leave the lanes. */
  release(settled: ReadonlyArray<Settled>): Effect.Effect<void>
  /** Drains the lanes with `deliver`, one window of a key's events at a time, until interrupted. */
  run(deliver: Deliver): Effect.Effect<never>
  /** Events waiting behind their key (not yet publishing). */
  readonly depth: Effect.Effect<number>
  /** Events held in memory. */
  readonly heldCount: Effect.Effect<number>
  /** Waits until no event is held. */
  readonly drained: Effect.Effect<void>
  /** This process's id in the journal's `claimed_by`: the events it holds, under a lease it renews. */
  readonly instanceId: string
}>()("chatico/services/Lanes") {
  static readonly layer = Layer.effect(
    Lanes,
    Effect.gen(function*() {
      const keys = new Map<string, KeyState>()
      const held = new Set<string>()
      // Released while a journal read runs, with their outcome's attempts (undefined when no read
      // runs): bounded by what was held.
      let releasedDuringRead: Map<string, number> | undefined
      let queued = 0
      // At most one entry per key, and a key exists only while it holds events or is in backlog.
      const runnable = yield* Queue.bounded<KeyState>(LANES_CAPACITY + BACKLOG_KEYS_PER_READ)
      const inBacklog = new Set<KeyState>()
      const backlogSignal = yield* Queue.sliding<void>(1)

      const stateOf = (key: string) => {
        let state = keys.get(key)
        if (state === undefined) {
          state = { key, lane: laneOf(key), queue: [], head: 0, running: false, backlog: false, skipped: 0 }
          keys.set(key, state)
        }
        return state
      }

      const enqueue = (state: KeyState, event: JournaledEvent) => {
        held.add(event.eventId)
        state.queue.push(event)
        queued++
        if (!state.running) {
          state.running = true
          Queue.offerUnsafe(runnable, state)
        }
      }

      const toBacklog = (state: KeyState) => {
        if (state.backlog) return
        state.backlog = true
        inBacklog.add(state)
        Queue.offerUnsafe(backlogSignal, undefined)
      }

      const forgetIfIdle = (state: KeyState) => {
        if (!state.running && !state.backlog && state.head >= state.queue.length) keys.delete(state.key)
      }

      const offer = (events: ReadonlyArray<JournaledEvent>) =>
        Effect.sync(() => {
          for (const event of events) {
            if (held.has(event.eventId)) continue
            const state = stateOf(event.entryId)
            if (!state.backlog && held.size >= LANES_CAPACITY) toBacklog(state)
            if (state.backlog) state.skipped++
            else enqueue(state, event)
          }
        })

      const backlog = (list: Iterable<string>) =>
        Effect.sync(() => {
          for (const key of list) toBacklog(stateOf(key))
        })

      const backlogKeys = Effect.gen(function*() {
        while (inBacklog.size === 0) yield* Queue.take(backlogSignal)
        const chosen: Array<BacklogKey> = []
        const states: Array<KeyState> = []
        for (const state of inBacklog) {
          states.push(state)
          if (states.length === BACKLOG_KEYS_PER_READ) break
        }
        // Round robin: the keys read now go to the back, so a long backlog never starves the others.
        for (const state of states) {
          inBacklog.delete(state)
          inBacklog.add(state)
          chosen.push({ key: state.key, mark: state.skipped })
        }
        return chosen
      })

      const feed = (key: string, events: ReadonlyArray<JournaledEvent>) =>
        Effect.sync(() => {
          const state = stateOf(key)
          for (const event of events) {
            if (held.has(event.eventId)) continue
            const settledAfter = releasedDuringRead?.get(event.eventId)
            if (settledAfter === undefined || event.attempts >= settledAfter) enqueue(state, event)
          }
        })

      const settle = (backlogKey: BacklogKey) =>
        Effect.sync(() => {
          const state = keys.get(backlogKey.key)
          if (state === undefined || !state.backlog) return true
          if (state.skipped !== backlogKey.mark) return false
          state.backlog = false
          state.skipped = 0
          inBacklog.delete(state)
          forgetIfIdle(state)
          return true
        })

      let empty: Deferred.Deferred<void> | undefined
      const release = (settled: ReadonlyArray<Settled>) =>
        Effect.suspend(() => {
          for (const { attempts, eventId } of settled) {
            if (held.delete(eventId)) releasedDuringRead?.set(eventId, attempts)
          }
          return held.size === 0 && empty !== undefined ? Deferred.succeed(empty, undefined) : Effect.void
        })
      const drained = Effect.suspend(() => {
        if (held.size === 0) return Effect.void
        empty ??= Deferred.makeUnsafe<void>()
        return Deferred.await(empty)
      })

      const drainKey = (state: KeyState, deliver: Deliver) =>
        Effect.gen(function*() {
          while (state.head < state.queue.length) {
            // Everything queued so far (up to the window) goes out pipelined, in order.
            const end = Math.min(state.queue.length, state.head + PIPELINE_WINDOW)
            const batch = state.queue.slice(state.head, end)
            const delivered = yield* Effect.exit(deliver(batch, state.lane))
            if (delivered._tag === "Failure") {
              // A defect: the key's events are still pending in the journal; read them back from there.
              yield* Effect.logError("delivery of an event failed unexpectedly", delivered.cause)
              for (let i = state.head; i < state.queue.length; i++) held.delete(state.queue[i]!.eventId)
              queued -= state.queue.length - state.head
              state.head = state.queue.length
              toBacklog(state)
              break
            }
            queued -= end - state.head
            state.head = end
            // Compact now and then, so a busy key's array does not grow for ever.
            if (state.head > 1024 && state.head * 2 > state.queue.length) {
              state.queue.splice(0, state.head)
              state.head = 0
            }
          }
          state.queue.length = 0
          state.head = 0
          state.running = false
          forgetIfIdle(state)
        })

      const run = (deliver: Deliver) =>
        Effect.scoped(Effect.gen(function*() {
          const fibers = yield* FiberSet.make()
          while (true) {
            const state = yield* Queue.take(runnable)
            yield* FiberSet.run(fibers, drainKey(state, deliver))
          }
        }))

      return Lanes.of({
        offer,
        backlog,
        backlogKeys,
        reading: (read) =>
          Effect.acquireUseRelease(
            Effect.sync(() => {
              releasedDuringRead = new Map()
            }),
            () => read,
            () =>
              Effect.sync(() => {
                releasedDuringRead = undefined
              })
          ),
        feed,
        settle,
        room: Effect.sync(() => Math.max(0, LANES_CAPACITY - held.size)),
        queuedBehind: (event) => {
          const state = keys.get(event.entryId)
          return state === undefined ? [] : state.queue.slice(Math.min(state.queue.length, state.head + PIPELINE_WINDOW))
        },
        release,
        run,
        depth: Effect.sync(() => queued),
        heldCount: Effect.sync(() => held.size),
        drained,
        instanceId: randomUUID()
      })
    })
  )
}
