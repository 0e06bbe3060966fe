import { Clock, Context, Duration, Effect, Exit, Layer, Queue, Schedule, type Tracer } from "effect"
import type { JournaledEvent } from "../domain/JournaledEvent.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"
import { JournalStore } from "../services/JournalStore.ts"
import { Broker, deadLetterQueue, type PublishError } from "../services/Broker.ts"
import { INSTANCE_GONE_AFTER_SECONDS, INSTANCE_HEARTBEAT, Lanes, LANES_CAPACITY } from "../services/Lanes.ts"
import { throttledLog } from "../services/LogThrottle.ts"
import * as Metrics from "../services/Metrics.ts"
import { propagationHeaders, TracingOn } from "../services/TraceContext.ts"
import { type Destination, Router } from "./Router.ts"

/** Outcomes written back to the journal in one UPDATE. */
export const OUTCOME_BATCH = 500
/**
 * After the first outcome of a batch, how long more are gathered before the UPDATE (unless
 * OUTCOME_BATCH are already there): fewer, larger statements when deliveries trickle in. An outcome
 * is off every event's path to its worker; only the webhook log shows it this much later.
 */
export const OUTCOME_LINGER = Duration.millis(25)
/** Publishes the broker refused (returned, nacked, refused) before the event is dead-lettered. */
export const PUBLISH_RETRY_BUDGET = 5
/** Waits between refused publishes of one event: 100 ms, 200 ms, … */
export const PUBLISH_RETRY_BASE = Duration.millis(100)
/** The longest wait between two tries of one event (a refused publish, an owner that cannot be known yet). */
export const RETRY_MAX_WAIT = Duration.seconds(5)
/** A heartbeat over three intervals late is logged at most once per this interval. */
export const HEARTBEAT_LATE_LOG_INTERVAL_MS = 10_000
/** A publish that keeps failing as unavailable while the broker says it is connected waits this long between tries. */
export const UNAVAILABLE_PAUSE = Duration.millis(250)
/** On shutdown, how long held events may take to reach the broker and be recorded. */
export const DRAIN_TIMEOUT = Duration.seconds(6)
export const outcomeWriteRetry = Schedule.min([Schedule.exponential("200 millis"), Schedule.spaced("5 seconds")])

/** Where an event ended, or (`pending`) why it is still waiting, for operators to see in the journal. */
type Outcome = {
  readonly event: JournaledEvent
  readonly ownerId: string | null
  readonly appId: string | null
  readonly status: "routed" | "unroutable" | "dead_lettered" | "pending"
  readonly attempts: number
  readonly lastError: string | null
  /** When it reached its end (epoch millis), or null for a note on a pending event. */
  readonly settledAt: number | null
}

const json = JSON.stringify

/** The message body a worker app receives, with `value` and `entry_time` exactly as Meta sent them. */
export const messageBody = (event: JournaledEvent, ownerId: string) =>
  Buffer.from(
    `{"event_id":${json(event.eventId)},"object":${json(event.object)},"field":${json(event.field)},` +
      `"owner_id":${json(ownerId)},"entry_id":${json(event.entryId)},"entry_time":${event.entryTimeText ?? "null"},` +
      `"media_id":${json(event.mediaId)},"received_at":${json(event.receivedAt.toISOString())},` +
      `"value":${event.valueRaw}}`
  )

/** 100 ms · 2ⁿ with jitter, capped at `RETRY_MAX_WAIT`. */
const backoff = (tries: number) =>
  Duration.millis(
    Math.min(Duration.toMillis(RETRY_MAX_WAIT), Duration.toMillis(PUBLISH_RETRY_BASE) * 2 ** Math.min(tries, 16)) *
      (0.8 + Math.random() * 0.4)
  )

/**
 * The publish stage: a key's events in order with publisher confirms, retried in place (the key waits),
 * dead-lettered after their budget; outcomes are written back in batches, off the key's path.
 */
export class Delivery extends Context.Service<Delivery, {
  /** Events held by the lanes, waiting behind their key or publishing. */
  readonly depth: Effect.Effect<number>
  /** Events held until their outcome is recorded. */
  readonly inFlightCount: Effect.Effect<number>
}>()("chatico/streams/Delivery") {
  static readonly layer = Layer.effect(
    Delivery,
    Effect.gen(function*() {
      const store = yield* JournalStore
      const broker = yield* Broker
      const router = yield* Router
      const lanes = yield* Lanes
      const database = yield* Database
      const tracing = yield* TracingOn
      const clock = yield* Clock.Clock
      const { deliveryLease, unroutableQueue, logLevel } = yield* AppConfig
      const debug = logLevel === "Debug"
      const outcomes = yield* Queue.bounded<Outcome>(LANES_CAPACITY)

      type Routed = Exclude<Destination, { readonly _tag: "Wait" }>

      /** One event of a window on its way: where it goes, its span, how often it was sent and refused. */
      interface Track {
        readonly event: JournaledEvent
        readonly span: Tracer.Span | undefined
        destination: Routed | undefined
        queue: string
        traceHeaders: Record<string, string> | undefined
        attempts: number
        refusals: number
        /** Its budget is spent: it goes to the dead-letter queue. */
        parking: boolean
        lastError: string | null
        noted: boolean
      }

      const message = (track: Track, destination: Routed) => ({
        queue: track.queue,
        body: messageBody(track.event, destination.ownerId),
        properties: {
          messageId: track.event.eventId,
          contentType: "application/json",
          timestamp: Math.floor(clock.currentTimeMillisUnsafe() / 1000),
          type: `${track.event.object}.${track.event.field}`,
          headers: {
            "x-owner-id": destination.ownerId,
            "x-worker-app-id": destination._tag === "WorkerApp" ? destination.app.id : null,
            "x-attempt": track.attempts,
            // The producer span's context, so a worker's consumer continues the trace.
            ...track.traceHeaders
          }
        }
      })

      const pendingNote = (event: JournaledEvent, attempts: number, lastError: string): Outcome => ({
        event,
        ownerId: null,
        appId: null,
        status: "pending",
        attempts,
        lastError,
        settledAt: null
      })

      // Why events still wait goes to the journal, also on the events of the key behind them
      // (best effort: a note is dropped when the mailbox is full).
      const noteWaiting = (tracks: ReadonlyArray<Track>, lastError: string) =>
        Effect.sync(() => {
          const first = tracks[0]
          if (first === undefined) return
          for (const track of tracks) {
            Queue.offerUnsafe(outcomes, pendingNote(track.event, track.attempts, track === first ? lastError : `${lastError} (an earlier event of account ${first.event.entryId} waits for it)`))
          }
          for (const behind of lanes.queuedBehind(first.event)) {
            Queue.offerUnsafe(outcomes, pendingNote(behind, behind.attempts, `${lastError} (an earlier event of account ${first.event.entryId} waits for it)`))
          }
        })

      // The owner cannot be known yet (the Graph API is throttled or down): the key waits, retrying.
      // `window[at]` is the event; the ones after it wait with it.
      const route = Effect.fnUntraced(function*(window: ReadonlyArray<Track>, at: number) {
        const track = window[at]!
        let noted: string | undefined
        for (let tries = 0;; tries++) {
          const destination = yield* router.route(track.event, track.span)
          if (destination._tag !== "Wait") {
            const worker = destination._tag === "WorkerApp"
            track.destination = destination
            track.queue = worker ? destination.app.queue_name : unroutableQueue
            track.span?.attribute("messaging.destination.name", track.queue)
            track.traceHeaders = track.span === undefined ? undefined : propagationHeaders(track.span, track.event.trace?.tracestate)
            return destination
          }
          if (destination.reason !== noted) {
            noted = destination.reason
            yield* noteWaiting(window.slice(at), destination.reason)
          }
          yield* Effect.sleep(backoff(tries + 3))
        }
      })

      // One producer span per event, in its webhook's trace (also after a restart: the context comes
      // from the journal), from its first routing to its outcome.
      const startTrack = (event: JournaledEvent): Effect.Effect<Track> => {
        const track = (span: Tracer.Span | undefined): Track => ({
          event,
          span,
          destination: undefined,
          queue: unroutableQueue,
          traceHeaders: undefined,
          attempts: event.attempts,
          refusals: 0,
          parking: false,
          lastError: null,
          noted: false
        })
        if (!tracing) return Effect.succeed(track(undefined))
        return Effect.map(
          Effect.makeSpan("publish", {
            kind: "producer",
            ...(event.trace === undefined ? { root: true } : { parent: event.trace.span }),
            attributes: {
              "messaging.system": "rabbitmq",
              "messaging.operation.type": "send",
              "messaging.operation.name": "publish",
              "messaging.message.id": event.eventId
            }
          }),
          track
        )
      }

      const finish = (track: Track, destination: Routed, lastError: string | null) =>
        Effect.gen(function*() {
          const worker = destination._tag === "WorkerApp"
          const status = track.parking ? "dead_lettered" as const : worker ? "routed" as const : "unroutable" as const
          if (track.span !== undefined) {
            const span = track.span
            yield* Effect.clockWith((clock) => Effect.sync(() => span.end(clock.currentTimeNanosUnsafe(), Exit.void)))
          }
          yield* Queue.offer(outcomes, {
            event: track.event,
            ownerId: destination.ownerId,
            appId: worker ? destination.app.id : null,
            status,
            attempts: track.attempts,
            lastError,
            settledAt: clock.currentTimeMillisUnsafe()
          })
        })

      /**
       * One key's events, written to the lane without waiting for earlier confirms; the failed go again in
       * order, after the reconnect (not counted) or a backoff (counted, up to the dead-letter queue).
       */
      const deliverWindow = (events: ReadonlyArray<JournaledEvent>, lane: number) =>
        Effect.gen(function*() {
          let todo: Array<Track> = []
          for (const event of events) todo.push(yield* startTrack(event))
          while (todo.length > 0) {
            const sent: Array<{ readonly track: Track; readonly destination: Routed; readonly confirm: Effect.Effect<void, PublishError>; readonly at: number }> = []
            let stop: { readonly at: number; readonly destination: Routed; readonly error: PublishError } | undefined
            for (let i = 0; i < todo.length; i++) {
              const track = todo[i]!
              const destination = track.destination ?? (yield* route(todo, i))
              track.attempts++
              const written = yield* Effect.result(broker.send(message(track, destination), lane))
              if (written._tag === "Failure") {
                track.attempts--
                stop = { at: i, destination, error: written.failure }
                break
              }
              sent.push({ track, destination, confirm: written.success, at: clock.currentTimeMillisUnsafe() })
            }
            const failed: Array<{ readonly track: Track; readonly destination: Routed; readonly error: PublishError }> = []
            for (const { track, destination, confirm, at } of sent) {
              const confirmed = yield* Effect.result(confirm)
              if (confirmed._tag === "Success") {
                yield* Metrics.observe(Metrics.confirmLatency, Metrics.seconds(at, clock.currentTimeMillisUnsafe()))
                if (debug) {
                  yield* Effect.logDebug("event delivered").pipe(Effect.annotateLogs({
                    event_id: track.event.eventId,
                    queue: track.queue,
                    attempt: track.attempts,
                    confirm_ms: clock.currentTimeMillisUnsafe() - at
                  }))
                }
                yield* finish(track, destination, track.parking ? track.lastError : null)
              } else {
                failed.push({ track, destination, error: confirmed.failure })
              }
            }
            if (stop !== undefined) failed.push({ track: todo[stop.at]!, destination: stop.destination, error: stop.error })
            const unsent = stop === undefined ? [] : todo.slice(stop.at + 1)
            todo = [...failed.map((f) => f.track), ...unsent]
            if (todo.length === 0) break

            let brokerAway = false
            let longestBackoff = 0
            const next: Array<Track> = []
            for (const { track, destination, error } of failed) {
              track.lastError = `${error.reason}: ${error.detail}`
              if (error.reason === "unavailable") {
                brokerAway = true
                next.push(track)
                continue
              }
              track.refusals++
              // The unroutable queue has no dead-letter queue: keep trying it.
              if (track.refusals >= PUBLISH_RETRY_BUDGET && track.queue !== unroutableQueue) {
                if (track.parking) {
                  // Not even its dead-letter queue takes it: recorded as dead-lettered with both errors.
                  yield* finish(track, destination, track.lastError)
                  continue
                }
                track.parking = true
                track.refusals = 0
                track.queue = deadLetterQueue(track.queue)
              }
              longestBackoff = Math.max(longestBackoff, track.refusals)
              next.push(track)
            }
            todo = [...next, ...unsent]
            if (brokerAway) {
              // Published again the moment the broker is back; a confirm timeout while connected pauses briefly.
              const first = todo.find((track) => !track.noted)
              if (first !== undefined && first.lastError !== null) {
                for (const track of todo) track.noted = true
                yield* noteWaiting(todo, first.lastError)
              }
              const waitedFrom = clock.currentTimeMillisUnsafe()
              yield* broker.awaitConnected
              if (clock.currentTimeMillisUnsafe() - waitedFrom < Duration.toMillis(UNAVAILABLE_PAUSE)) yield* Effect.sleep(UNAVAILABLE_PAUSE)
            } else if (longestBackoff > 0) {
              yield* Effect.sleep(backoff(longestBackoff - 1))
            }
          }
        })

      const writeOutcomes = (batch: ReadonlyArray<Outcome>) => {
        // One row per event (an UPDATE … FROM would pick any of two): a later outcome replaces a note.
        const latest = new Map<string, Outcome>()
        for (const outcome of batch) latest.set(outcome.event.eventId, outcome)
        return store.writeOutcomes(Array.from(latest.values()))
      }

      const countOutcomes = (batch: ReadonlyArray<Outcome>) => {
        const byOutcome = new Map<string, number>()
        const byApp = new Map<string, number>()
        const updates: Array<Metrics.Update> = []
        for (const outcome of batch) {
          if (outcome.settledAt === null) continue
          byOutcome.set(outcome.status, (byOutcome.get(outcome.status) ?? 0) + 1)
          if (outcome.status === "routed" && outcome.appId !== null) {
            byApp.set(outcome.appId, (byApp.get(outcome.appId) ?? 0) + 1)
          }
          updates.push(Metrics.observed(Metrics.deliveryLatency, Math.max(0, outcome.settledAt - outcome.event.receivedAt.getTime()) / 1000))
        }
        for (const [outcome, n] of byOutcome) updates.push(Metrics.added(Metrics.events, { outcome }, n))
        for (const [app, n] of byApp) updates.push(Metrics.added(Metrics.routedByApp, { worker_app_id: app }, n))
        return Metrics.updateAll(updates)
      }

      // Until an outcome is written its event stays held (and pending, under this instance's lease),
      // so no recovery reads it back; a database outage only delays the write.
      const recordOutcomes = Effect.gen(function*() {
        const first = yield* Queue.takeBetween(outcomes, 1, OUTCOME_BATCH)
        const batch = first.length < OUTCOME_BATCH
          ? [...first, ...(yield* Effect.andThen(Effect.sleep(OUTCOME_LINGER), Queue.takeBetween(outcomes, 0, OUTCOME_BATCH - first.length)))]
          : first
        yield* countOutcomes(batch)
        yield* writeOutcomes(batch).pipe(
          Effect.withTracerEnabled(false),
          Effect.tapError((error) => Effect.logWarning("delivery outcomes not recorded yet, retrying", error.message)),
          Effect.retry(outcomeWriteRetry),
          Effect.ignore
        )
        yield* lanes.release(
          batch.flatMap((outcome) => outcome.status === "pending" ? [] : [{ eventId: outcome.event.eventId, attempts: outcome.attempts }])
        )
      })

      const renewLeases = store.renewLeases.pipe(
        Effect.withTracerEnabled(false),
        Effect.catch((error) => Effect.logWarning("delivery leases not renewed", error.message))
      )

      yield* Effect.forkScoped(Effect.forever(recordOutcomes))
      yield* Effect.forkScoped(lanes.run(deliverWindow))
      yield* Effect.forkScoped(Effect.andThen(
        database.awaitReady,
        renewLeases.pipe(Effect.repeat(Schedule.spaced(Duration.millis(Duration.toMillis(deliveryLease) / 3))))
      ))
      // Alive: the events this instance holds are not taken over while it is seen. A late heartbeat
      // is logged (once per interval): past INSTANCE_GONE_AFTER_SECONDS others take over its events.
      let lastBeat = clock.currentTimeMillisUnsafe()
      const logLate = throttledLog(HEARTBEAT_LATE_LOG_INTERVAL_MS)
      const heartbeat = store.heartbeat.pipe(
        Effect.andThen(Effect.suspend(() => {
          const gapMs = clock.currentTimeMillisUnsafe() - lastBeat
          lastBeat = clock.currentTimeMillisUnsafe()
          return gapMs <= Duration.toMillis(INSTANCE_HEARTBEAT) * 3 ? Effect.void : logLate("late", (suppressed) =>
            Effect.logWarning("delivery heartbeat late").pipe(Effect.annotateLogs({
              gap_ms: gapMs,
              gone_after_seconds: INSTANCE_GONE_AFTER_SECONDS,
              late_heartbeats_not_logged: suppressed
            })))
        })),
        Effect.withTracerEnabled(false),
        Effect.catch((error) => Effect.logWarning("delivery heartbeat not written", error.message))
      )
      yield* Effect.forkScoped(Effect.andThen(database.awaitReady, heartbeat.pipe(Effect.repeat(Schedule.spaced(INSTANCE_HEARTBEAT)))))

      // On shutdown: let held events reach the broker and be recorded, then hand what is left to
      // whoever runs next (their lease ends now, so a sweep takes them at once, in order).
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          yield* lanes.drained.pipe(Effect.timeout(DRAIN_TIMEOUT), Effect.ignore)
          yield* store.releaseLeases.pipe(Effect.timeout("2 seconds"), Effect.ignore)
          yield* store.forgetInstance.pipe(Effect.timeout("1 second"), Effect.ignore)
        })
      )

      return Delivery.of({ depth: lanes.depth, inFlightCount: lanes.heldCount })
    })
  )
}
