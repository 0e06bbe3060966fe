import { Cause, Context, Deferred, Duration, Effect, Fiber, Layer, Option, Queue, Schema } from "effect"
import { type JournaledEvent, toJournaled } from "../domain/JournaledEvent.ts"
import type { WebhookEvent } from "../domain/Webhook.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Database } from "../services/Database.ts"
import { makeDeadlines } from "../services/Deadlines.ts"
import { JournalStore, type JournalStoreError, type NewRow } from "../services/JournalStore.ts"
import { Lanes } from "../services/Lanes.ts"
import { throttledLog } from "../services/LogThrottle.ts"
import * as Metrics from "../services/Metrics.ts"
import { journalTraceContext, type RequestTrace, TracingOn } from "../services/TraceContext.ts"

/** Webhook requests waiting for the journal; a full mailbox answers 503. */
export const JOURNAL_MAILBOX = 2048
/** Events one journal transaction carries at most (a bigger request is written alone, whole). */
export const JOURNAL_EVENTS_PER_TRANSACTION = 20_000
// Hot path: a stack trace captured per span would cost more than the span.
const noStackTrace = { captureStackTrace: false } as const

/**
 * Journal writes in flight at once. One: the requests that arrive while a write runs all share the
 * next, and Postgres's cost per statement is several times its cost per row (README, "Performance").
 */
export const JOURNAL_WRITERS = 1
/** How long a request may wait for its commit before it is answered 503. */
export const JOURNAL_COMMIT_TIMEOUT = Duration.seconds(8)
/** At shutdown, queued requests and writes under way get this long to commit. */
export const JOURNAL_DRAIN_TIMEOUT = Duration.seconds(3)
/** Journal batches failed by a database outage are logged once per this interval. */
export const JOURNAL_FAULT_LOG_INTERVAL_MS = 10_000

export class JournalUnavailable extends Schema.TaggedError<JournalUnavailable>()("JournalUnavailable", {
  reason: Schema.Literals(["full", "database", "timeout", "closing"]),
  detail: Schema.String
}) {}

export interface RecordResult {
  readonly fresh: number
  readonly duplicates: number
}

interface Pending {
  readonly events: ReadonlyArray<WebhookEvent>
  readonly receivedAt: Date
  /** Only `instagram` events are delivered; others are journaled as `ignored`. */
  readonly routable: boolean
  readonly trace: RequestTrace | undefined
  /** `trace` as the rows' `trace_context`, written once for all the request's events. */
  readonly traceContext: string | null
  readonly done: Deferred.Deferred<RecordResult, JournalUnavailable>
}

/** An event of a request as the journal writes it (its status decided once, when the batch is built). */
interface Row extends NewRow {
  readonly pending: Pending
}

/** The journal status an event starts with: only `instagram` events that can be delivered are `pending`. */
const statusOf = (event: WebhookEvent, routable: boolean) =>
  event.disposition === "invalid" ? "invalid" : event.disposition === "ignored" || !routable ? "ignored" : "pending"

/** Consecutive requests grouped so a group holds at most `maxEvents` events (one bigger request stands alone). */
const chunksOf = (batch: ReadonlyArray<Pending>, maxEvents: number): Array<Array<Pending>> => {
  const chunks: Array<Array<Pending>> = []
  let current: Array<Pending> = []
  let events = 0
  for (const pending of batch) {
    if (current.length > 0 && events + pending.events.length > maxEvents) {
      chunks.push(current)
      current = []
      events = 0
    }
    current.push(pending)
    events += pending.events.length
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

/**
 * The transactional outbox: concurrent webhooks' rows go in one transaction, each request answered once
 * they commit; a redelivered event is recorded in `webhook_duplicates`, not delivered again.
 */
export class Journal extends Context.Service<Journal, {
  /** `trace`: the webhook's trace when tracing is on; it goes into the rows. */
  record(
    events: ReadonlyArray<WebhookEvent>,
    receivedAt: Date,
    routable: boolean,
    trace: RequestTrace | undefined
  ): Effect.Effect<RecordResult, JournalUnavailable>
  /** Requests waiting in the mailbox. */
  readonly depth: Effect.Effect<number>
  /** From now on new webhooks are answered 503 (shutdown); what is queued is still written. */
  readonly stopAccepting: Effect.Effect<void>
}>()("chatico/streams/Journal") {
  static readonly layer = Layer.effect(
    Journal,
    Effect.gen(function*() {
      const store = yield* JournalStore
      const database = yield* Database
      const lanes = yield* Lanes
      // Ended at shutdown: the writers take what is left, then stop.
      const mailbox = yield* Queue.bounded<Pending, Cause.Done>(JOURNAL_MAILBOX)
      let closing = false
      const config = yield* AppConfig
      const tracing = yield* TracingOn
      // Forked before the drain's finalizer is added, so it still fails late commits during the drain.
      const commits = yield* makeDeadlines<RecordResult, JournalUnavailable>(
        JOURNAL_COMMIT_TIMEOUT,
        () => new JournalUnavailable({ reason: "timeout", detail: "the journal did not commit in time" })
      )
      const batchRequests = config.journalBatchRequests
      const batchWindow = config.journalBatchWindow

      const commitBatch = (batch: ReadonlyArray<Pending>) =>
        Effect.gen(function*() {
          // One row per event id: the first occurrence in the batch is the event,
          // any later one (the same body posted twice at once) a duplicate.
          const seen = new Set<string>()
          const rows: Array<Row> = []
          const repeats: Array<Row> = []
          for (const pending of batch) {
            for (const event of pending.events) {
              const row: Row = {
                event,
                pending,
                receivedAt: pending.receivedAt,
                status: statusOf(event, pending.routable),
                traceContext: pending.traceContext
              }
              if (seen.has(event.eventId)) repeats.push(row)
              else {
                seen.add(event.eventId)
                rows.push(row)
              }
            }
          }
          const inserted = new Set<string>()
          const behind = new Set<string>()
          const written = yield* store.insert(rows, repeats)
          for (const row of written) {
            inserted.add(row.event_id)
            if (row.behind) behind.add(row.event_id)
          }
          return { rows, repeats, inserted, behind }
        })

      // Only after the commit: each request is answered and its new events go on to delivery.
      const writeBatch = Effect.fnUntraced(function*(batch: ReadonlyArray<Pending>) {
        const { rows, repeats, inserted, behind } = yield* commitBatch(batch)
        const fresh: Array<JournaledEvent> = []
        const waitingKeys = new Set<string>()
        // A row is its id's first request in the batch: that request counts it as new.
        const freshPer = new Map<Pending, number>()
        for (const { event, pending, status } of rows) {
          if (!inserted.has(event.eventId)) continue
          freshPer.set(pending, (freshPer.get(pending) ?? 0) + 1)
          if (status !== "pending") continue
          if (behind.has(event.eventId)) waitingKeys.add(event.entryId)
          fresh.push(toJournaled(event, pending.receivedAt, pending.trace))
        }
        for (const pending of batch) {
          const freshCount = freshPer.get(pending) ?? 0
          yield* Deferred.succeed(pending.done, { fresh: freshCount, duplicates: pending.events.length - freshCount })
        }
        yield* Metrics.observe(Metrics.journalBatchSize, rows.length + repeats.length)
        // Commit order is delivery order: the lanes take the batch now, a waiting key from the journal.
        if (waitingKeys.size > 0) yield* lanes.backlog(waitingKeys)
        yield* lanes.offer(fresh)
      })

      const failBatch = (batch: ReadonlyArray<Pending>, detail: string) =>
        Effect.forEach(
          batch,
          (pending) => Deferred.fail(pending.done, new JournalUnavailable({ reason: "database", detail })),
          { discard: true }
        )

      const isConnectionFault = (cause: Cause.Cause<JournalStoreError>) =>
        Cause.findErrorOption(cause).pipe(Option.exists((error) => error.reason === "unavailable"))

      // One request alone, in its own transaction; it fails only for a fault of ours, and is logged.
      const writeOne = (pending: Pending) =>
        writeBatch([pending]).pipe(
          Effect.catchCause((cause) =>
            failBatch([pending], "the journal could not be written").pipe(
              Effect.andThen(Effect.logWarning("journal write failed", cause))
            )
          )
        )

      // An outage fails every batch; it is logged once per interval (Database logs the outage itself).
      const logUnavailable = throttledLog(JOURNAL_FAULT_LOG_INTERVAL_MS)

      // A batch that fails for any reason but the connection is retried one
      // request at a time, so one bad body cannot fail its neighbours.
      const writeChunk = (batch: ReadonlyArray<Pending>) =>
        writeBatch(batch).pipe(
          Effect.catchCause((cause) =>
            isConnectionFault(cause)
              ? failBatch(batch, "the database is unavailable").pipe(
                Effect.andThen(logUnavailable("database", (suppressed) =>
                  Effect.logWarning("journal batch failed: database unavailable", cause).pipe(
                    Effect.annotateLogs({ batches_not_logged: suppressed })
                  )))
              )
              : batch.length === 1
              ? writeOne(batch[0]!)
              : Effect.forEach(batch, writeOne, { discard: true })
          )
        )

      // Requests are folded into transactions of at most JOURNAL_EVENTS_PER_TRANSACTION events (a
      // bigger request goes alone), so one statement never grows with the mailbox.
      const write = (batch: ReadonlyArray<Pending>) =>
        Effect.forEach(chunksOf(batch, JOURNAL_EVENTS_PER_TRANSACTION), writeChunk, { discard: true })

      // The journal span of a webhook: the batch write that committed it. It
      // sits in the first webhook's trace and links to every other one it
      // served. Its statements are not traced one by one: a span per statement
      // (with its SQL text) would cost more than the insert.
      const withBatchSpan = (batch: ReadonlyArray<Pending>) => {
        const traced = batch.flatMap((pending) => pending.trace === undefined ? [] : [pending.trace.span])
        const [parent, ...others] = traced
        return <A, E, R>(effect: Effect.Effect<A, E, R>) =>
          effect.pipe(Effect.withSpan("Journal.batch", {
            ...(parent === undefined ? { root: true } : { parent }),
            attributes: { "chatico.batch.requests": batch.length, "chatico.batch.traces": traced.length },
            links: others.map((span) => ({ span, attributes: {} }))
          }, noStackTrace))
      }

      const writer = Effect.gen(function*() {
        while (true) {
          const first = yield* Queue.takeBetween(mailbox, 1, batchRequests)
          // With a window, wait a moment for more webhooks to share the write;
          // without one, whatever queued while the last write ran shares it.
          const batch = first.length < batchRequests && Duration.isGreaterThan(batchWindow, Duration.zero)
            ? [
              ...first,
              ...(yield* Effect.andThen(Effect.sleep(batchWindow), Queue.takeBetween(mailbox, 0, batchRequests - first.length)).pipe(
                Effect.catchIf(Cause.isDone, () => Effect.succeed([]))
              ))
            ]
            : first
          const written = write(batch).pipe(Effect.withTracerEnabled(false))
          yield* (tracing ? withBatchSpan(batch)(written) : written)
        }
      })
      const writers = yield* Effect.forkScoped(Effect.all(
        Array.from({ length: JOURNAL_WRITERS }, () => writer.pipe(Effect.catchIf(Cause.isDone, () => Effect.void))),
        { concurrency: "unbounded", discard: true }
      ))

      // On shutdown, answer what is already queued (and finish the writes under way) before the writers stop.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          closing = true
          yield* Queue.end(mailbox)
          yield* Fiber.join(writers)
        }).pipe(Effect.timeout(JOURNAL_DRAIN_TIMEOUT), Effect.ignore)
      )

      const record = (events: ReadonlyArray<WebhookEvent>, receivedAt: Date, routable: boolean, trace: RequestTrace | undefined) =>
        Effect.gen(function*() {
          if (events.length === 0) return { fresh: 0, duplicates: 0 }
          if (closing) return yield* new JournalUnavailable({ reason: "closing", detail: "the service is shutting down" })
          yield* database.ready.pipe(
            Effect.mapError((error) => new JournalUnavailable({ reason: "database", detail: error.detail }))
          )
          const done = yield* Deferred.make<RecordResult, JournalUnavailable>()
          const traceContext = trace === undefined ? null : journalTraceContext(trace)
          if (!Queue.offerUnsafe(mailbox, { events, receivedAt, routable, trace, traceContext, done })) {
            return yield* closing
              ? new JournalUnavailable({ reason: "closing", detail: "the service is shutting down" })
              : new JournalUnavailable({ reason: "full", detail: "the journal mailbox is full" })
          }
          return yield* commits.await(done)
        })

      return Journal.of({
        record,
        depth: Queue.size(mailbox),
        stopAccepting: Effect.sync(() => {
          closing = true
        })
      })
    })
  )
}
