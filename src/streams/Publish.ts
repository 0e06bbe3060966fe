import { Context, Duration, Effect, Layer, Queue, Schedule, type Tracer } from "effect"
import { SqlClient } from "effect/sql"
import { AppConfig } from "../layers/Config.ts"
import { Broker, deadLetterQueue, type PublishError, UNROUTABLE_QUEUE } from "../services/Broker.ts"
import * as Metrics from "../services/Metrics.ts"
import { propagationHeaders, TracingOn, withOwnSpan } from "../services/TraceContext.ts"
import type { JournaledEvent } from "./Journal.ts"
import { type Destination, Router } from "./Route.ts"

/** Journaled events waiting to be published; when full, they wait in the journal for the sweeper. */
export const DELIVERY_MAILBOX = 20_000
/** Events taken and published together; their outcomes are written in one UPDATE. */
export const PUBLISH_BATCH = 500
export const PUBLISH_WORKERS = 2
/** Finished event ids remembered (for one lease) so a racing recovery sweep skips them. */
export const MAX_RECENTLY_FINISHED = 100_000
/** Publishes the broker refused (returned, nacked) before the event is dead-lettered. */
export const PUBLISH_RETRY_BUDGET = 5
export const publishRetrySchedule = Schedule.exponential("100 millis", 2).pipe(Schedule.jittered)

export type Outcome =
  | { readonly _tag: "Routed"; readonly event: JournaledEvent; readonly ownerId: string; readonly appId: string | null; readonly status: "routed" | "unroutable" | "dead_lettered"; readonly attempts: number; readonly lastError: string | null }
  | { readonly _tag: "Deferred"; readonly event: JournaledEvent; readonly attempts: number; readonly lastError: string }

const json = JSON.stringify

/** The message body a worker app receives, with `value` and `entry_time` exactly as Meta sent them. */
export const messageBody = (event: JournaledEvent, ownerId: string) =>
  Buffer.from(
    `{"event_id":${json(event.eventId)},"object":${json(event.object)},"field":${json(event.field)},` +
      `"owner_id":${json(ownerId)},"entry_id":${json(event.entryId)},"entry_time":${event.entryTimeText ?? "null"},` +
      `"media_id":${json(event.mediaId)},"received_at":${json(event.receivedAt.toISOString())},` +
      `"value":${event.valueRaw}}`
  )

/**
 * The publish stage: takes journaled events from a bounded mailbox, routes
 * them, publishes each with its own confirm, and writes the outcomes back to
 * the journal in one batch per round.
 */
export class Delivery extends Context.Service<Delivery, {
  /** Hands newly journaled events over without waiting; what does not fit waits for the sweeper. */
  submit(events: ReadonlyArray<JournaledEvent>): Effect.Effect<void>
  /** Hands recovered events over, waiting for room. */
  submitWaiting(events: ReadonlyArray<JournaledEvent>): Effect.Effect<void>
  isInFlight(eventId: string): boolean
  readonly depth: Effect.Effect<number>
  readonly inFlightCount: Effect.Effect<number>
}>()("chatico/streams/Publish/Delivery") {
  static readonly layer = Layer.effect(
    Delivery,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const broker = yield* Broker
      const router = yield* Router
      const mailbox = yield* Queue.bounded<JournaledEvent>(DELIVERY_MAILBOX)
      const inFlight = new Set<string>()
      // Events this instance just finished, by when: a sweep that claimed one
      // a moment before its outcome was written must not publish it again.
      // A replayed event comes back with more attempts than were recorded, so it passes.
      const finished = new Map<string, { readonly at: number; readonly attempts: number }>()
      const finishedWindow = Duration.toMillis((yield* AppConfig).deliveryLease)
      const markFinished = (eventId: string, attempts: number, now: number) => {
        finished.delete(eventId)
        finished.set(eventId, { at: now, attempts })
      }
      // Oldest first, once per round: a Map iterator starts by skipping every
      // entry deleted since the table was last rebuilt, so starting one per
      // event cost microseconds per event at webhook rates.
      const forgetFinished = (now: number) => {
        for (const [id, done] of finished) {
          if (done.at > now - finishedWindow && finished.size <= MAX_RECENTLY_FINISHED) break
          finished.delete(id)
        }
      }
      const recentlyFinished = (event: JournaledEvent, now: number) => {
        const done = finished.get(event.eventId)
        return done !== undefined && done.at > now - finishedWindow && event.attempts < done.attempts
      }

      const tracing = yield* TracingOn

      const publishTo = (
        event: JournaledEvent,
        destination: Exclude<Destination, { readonly _tag: "Wait" }>,
        queue: string,
        attempt: number,
        traceHeaders: Record<string, string> | undefined
      ) =>
        broker.publish({
          queue,
          body: messageBody(event, destination.ownerId),
          properties: {
            messageId: event.eventId,
            contentType: "application/json",
            deliveryMode: 2,
            timestamp: Math.floor(Date.now() / 1000),
            type: `${event.object}.${event.field}`,
            headers: {
              "x-owner-id": destination.ownerId,
              "x-worker-app-id": destination._tag === "WorkerApp" ? destination.app.id : null,
              "x-attempt": attempt,
              // The producer span's context, so a worker's consumer continues the trace.
              ...traceHeaders
            }
          }
        })

      /** Routes and publishes one event; `span` is its producer span when tracing is on. */
      const deliverOne = Effect.fnUntraced(function*(event: JournaledEvent, span: Tracer.Span | undefined) {
        const destination = yield* router.route(event, span)
        if (destination._tag === "Wait") {
          return { _tag: "Deferred", event, attempts: event.attempts, lastError: destination.reason } satisfies Outcome
        }
        const queue = destination._tag === "WorkerApp" ? destination.app.queue_name : UNROUTABLE_QUEUE
        const appId = destination._tag === "WorkerApp" ? destination.app.id : null
        const status = destination._tag === "WorkerApp" ? "routed" as const : "unroutable" as const
        span?.attribute("messaging.destination.name", queue)
        const traceHeaders = span === undefined ? undefined : propagationHeaders(span, event.trace?.tracestate)
        let attempts = event.attempts
        let lastError: string | null = null
        const attempt = Effect.suspend(() => {
          attempts++
          const sent = Date.now()
          return publishTo(event, destination, queue, attempts, traceHeaders).pipe(
            Effect.tap(() => Metrics.observe(Metrics.confirmLatency, Metrics.seconds(sent)))
          )
        }).pipe(
          Effect.tapError((error) => Effect.sync(() => (lastError = `${error.reason}: ${error.detail}`)))
        )
        const budget = event.attempts + PUBLISH_RETRY_BUDGET
        const result = yield* attempt.pipe(
          Effect.retry({
            schedule: publishRetrySchedule,
            while: (error: PublishError) => error.reason !== "unavailable" && attempts < budget
          }),
          Effect.result
        )
        if (result._tag === "Success") {
          return { _tag: "Routed", event, ownerId: destination.ownerId, appId, status, attempts, lastError: null } satisfies Outcome
        }
        if (result.failure.reason === "unavailable" || destination._tag === "Unroutable") {
          return { _tag: "Deferred", event, attempts, lastError: lastError ?? result.failure.detail } satisfies Outcome
        }
        // The retry budget is spent: park the event in the worker app's dead-letter queue.
        attempts++
        const parked = yield* publishTo(event, destination, deadLetterQueue(queue), attempts, traceHeaders).pipe(Effect.result)
        return parked._tag === "Success"
          ? {
            _tag: "Routed",
            event,
            ownerId: destination.ownerId,
            appId,
            status: "dead_lettered",
            attempts,
            lastError
          } satisfies Outcome
          : { _tag: "Deferred", event, attempts, lastError: `${parked.failure.reason}: ${parked.failure.detail}` } satisfies Outcome
      })

      // One producer span per event, in its webhook's trace (also after a
      // restart: the context comes from the journal). Owner resolution happens
      // inside it: the router makes it the parent of a Graph API lookup.
      const deliver = (event: JournaledEvent) => {
        if (!tracing) return deliverOne(event, undefined)
        return withOwnSpan("publish", {
          kind: "producer",
          ...(event.trace === undefined ? { root: true } : { parent: event.trace.span }),
          attributes: {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.message.id": event.eventId
          }
        }, (span) => deliverOne(event, span))
      }

      const writeOutcomes = (outcomes: ReadonlyArray<Outcome>) => {
        const now = new Date()
        const rows = outcomes.map((outcome) =>
          outcome._tag === "Routed"
            ? sql`(${outcome.event.eventId}, ${outcome.status}, ${outcome.ownerId}, ${outcome.appId}, ${outcome.attempts}, ${outcome.lastError}, ${now})`
            : sql`(${outcome.event.eventId}, ${"pending"}, ${null}, ${null}, ${outcome.attempts}, ${outcome.lastError}, ${null})`
        )
        return sql`
          UPDATE webhook_events AS w SET
            status = v.status,
            owner_id = COALESCE(v.owner_id, w.owner_id),
            worker_app_id = COALESCE(v.worker_app_id::uuid, w.worker_app_id),
            attempts = v.attempts::int,
            last_error = v.last_error,
            delivered_at = v.delivered_at::timestamptz
          FROM (VALUES ${sql.csv(rows)}) AS v(event_id, status, owner_id, worker_app_id, attempts, last_error, delivered_at)
          WHERE w.event_id = v.event_id AND w.status = 'pending'
        `
      }

      const record = (outcomes: ReadonlyArray<Outcome>) => {
        const byOutcome = new Map<string, number>()
        const byApp = new Map<string, number>()
        for (const outcome of outcomes) {
          const key = outcome._tag === "Routed" ? outcome.status : "deferred"
          byOutcome.set(key, (byOutcome.get(key) ?? 0) + 1)
          if (outcome._tag === "Routed" && outcome.status === "routed" && outcome.appId !== null) {
            byApp.set(outcome.appId, (byApp.get(outcome.appId) ?? 0) + 1)
          }
        }
        const now = Date.now()
        return Effect.all([
          Metrics.countAll(Metrics.events, byOutcome, "outcome"),
          Metrics.countAll(Metrics.routedByApp, byApp, "worker_app_id"),
          Effect.forEach(outcomes, (outcome) =>
            outcome._tag === "Routed"
              ? Metrics.observe(Metrics.deliveryLatency, Math.max(0, now - outcome.event.receivedAt.getTime()) / 1000)
              : Effect.void, { discard: true })
        ], { discard: true })
      }

      const deliverBatch = (batch: ReadonlyArray<JournaledEvent>) =>
        Effect.gen(function*() {
          const outcomes = yield* Effect.forEach(batch, deliver, { concurrency: "unbounded" })
          yield* record(outcomes)
          yield* writeOutcomes(outcomes).pipe(
            Effect.withTracerEnabled(false),
            Effect.retry({ schedule: Schedule.exponential("200 millis"), times: 5 }),
            // Unrecorded outcomes leave the rows pending: recovery publishes them
            // again later (at least once), so losing this write loses nothing.
            Effect.catch((error) => Effect.logWarning("delivery outcomes not recorded", error.message))
          )
          const now = Date.now()
          for (const outcome of outcomes) {
            if (outcome._tag === "Routed") markFinished(outcome.event.eventId, outcome.attempts, now)
          }
          forgetFinished(now)
        }).pipe(
          // Whatever happens to the round, its events leave the in-flight set,
          // so recovery can pick up any that are still pending.
          Effect.ensuring(Effect.sync(() => {
            for (const event of batch) inFlight.delete(event.eventId)
          }))
        )

      const round = Effect.flatMap(Queue.takeBetween(mailbox, 1, PUBLISH_BATCH), deliverBatch)

      const worker = round.pipe(
        Effect.forever,
        Effect.catchCause((cause) => Effect.logError("publish worker failed, restarting", cause)),
        Effect.repeat(Schedule.spaced("1 second"))
      )
      yield* Effect.forkScoped(Effect.all(Array.from({ length: PUBLISH_WORKERS }, () => worker), { concurrency: "unbounded" }))

      // On shutdown, let queued events reach the broker (confirms included) before stopping.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          while ((yield* Queue.size(mailbox)) > 0 || inFlight.size > 0) yield* Effect.sleep("20 millis")
        }).pipe(Effect.timeout("6 seconds"), Effect.ignore)
      )

      const submit = (events: ReadonlyArray<JournaledEvent>) =>
        Effect.sync(() => {
          for (const event of events) {
            if (inFlight.has(event.eventId)) continue
            if (Queue.offerUnsafe(mailbox, event)) inFlight.add(event.eventId)
          }
        })

      const submitWaiting = (events: ReadonlyArray<JournaledEvent>) =>
        Effect.forEach(events, (event) =>
          inFlight.has(event.eventId) || recentlyFinished(event, Date.now())
            ? Effect.void
            : Effect.sync(() => inFlight.add(event.eventId)).pipe(Effect.andThen(Queue.offer(mailbox, event))), { discard: true })

      return Delivery.of({
        submit,
        submitWaiting,
        isInFlight: (eventId) => inFlight.has(eventId),
        depth: Queue.size(mailbox),
        inFlightCount: Effect.sync(() => inFlight.size)
      })
    })
  )
}
