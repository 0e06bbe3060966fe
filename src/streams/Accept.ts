import { Cause, Clock, Context, Effect, Exit, FiberSet, Layer, Option, Redacted, Result, type Tracer } from "effect"
import { Headers, HttpRouter, type HttpServerRequest, HttpServerResponse, HttpTraceContext } from "effect/http"
import type { IncomingMessage, ServerResponse } from "node:http"
import { parseWebhook } from "../domain/Webhook.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { constantTimeEqual } from "../services/ConstantTime.ts"
import { SignatureVerifier } from "../services/SignatureVerifier.ts"
import * as Metrics from "../services/Metrics.ts"
import { type RequestTrace, TracingOn, underSpan, validTracestate, withOwnSpan } from "../services/TraceContext.ts"
import { type AccessNote, noteFor } from "../http/AccessNotes.ts"
import { accessLogOn, recordAnswered } from "../http/Edge.ts"
import { Admission, type Refusal } from "../http/Guard.ts"
import { originForm, WEBHOOK_PATH, WEBHOOK_RETRY_AFTER_SECONDS } from "../http/WebhookPath.ts"
import { type BodyBudget, dropUnreadBody, readBody } from "./WebhookBody.ts"
import { Journal } from "./Journal.ts"

/** A webhook POST as the intake handles it: Node's own request and response, past effect's router. */
interface Post {
  readonly incoming: IncomingMessage
  readonly response: ServerResponse
  readonly client: string
  /** What the access log line adds (events, duplicates, why it was refused, the trace). */
  readonly note: AccessNote
}

/** An answer before it is written: its status, its JSON body and any headers beyond the content's. */
interface Reply {
  readonly status: number
  readonly body: unknown
  readonly headers?: Record<string, string>
}

const detail = (status: number, message: string, headers?: Record<string, string>): Reply => ({
  status,
  body: { detail: message },
  ...(headers === undefined ? {} : { headers })
})

const refused = (refusal: Refusal): Reply => detail(refusal.status, refusal.detail, refusal.headers)

const isRefusal = (value: Reply | Refusal): value is Refusal => "detail" in value

const headerOf = (incoming: IncomingMessage, name: string): string | undefined => {
  const value = incoming.headers[name]
  return typeof value === "string" ? value : undefined
}

/**
 * The server span's kind, parent and attributes, built without intermediate objects, and the
 * caller's `tracestate` when the parent is a W3C `traceparent`.
 */
const webhookSpanStart = (url: string, headers: Headers.Headers, client: string | undefined) => {
  const query = url.indexOf("?")
  const attributes: Record<string, unknown> = {
    "http.route": WEBHOOK_PATH,
    "url.path": query === -1 ? url : url.slice(0, query),
    "url.scheme": "http"
  }
  const userAgent = headers["user-agent"]
  if (userAgent !== undefined) attributes["user_agent.original"] = userAgent
  if (client !== undefined) attributes["client.address"] = client
  const w3c = HttpTraceContext.w3c(headers)
  const parent = Option.isSome(w3c) ? w3c : HttpTraceContext.fromHeaders(headers)
  return {
    attributes,
    parent: Option.getOrUndefined(parent),
    tracestate: Option.isSome(w3c) ? validTracestate(headers["tracestate"]) : undefined
  }
}

/**
 * A webhook request's server span, made here because effect's HTTP tracer costs too much per request
 * (README, "Tracing cost"). The query string (the verification token) is never recorded.
 */
const webhookSpan = <A extends { readonly status: number }, E, R>(
  method: string,
  start: ReturnType<typeof webhookSpanStart>,
  handler: (trace: RequestTrace) => Effect.Effect<A, E, R>
) => {
  const attributes = { "http.request.method": method, ...start.attributes }
  const options: Tracer.SpanOptionsNoTrace = start.parent !== undefined
    ? { kind: "server", parent: start.parent, attributes }
    : { kind: "server", root: true, attributes }
  return withOwnSpan(
    `${method} ${WEBHOOK_PATH}`,
    options,
    (span) => handler({ span, tracestate: start.tracestate }),
    (exit, span) => {
      if (Exit.isFailure(exit)) return exit
      span.attribute("http.response.status_code", exit.value.status)
      // As OpenTelemetry's HTTP conventions say: only a 5xx answer is an error of the server span.
      return exit.value.status >= 500 ? Exit.fail(new Error(`answered ${exit.value.status}`)) : exit
    }
  )
}

/** The client of a request whose socket has no address any more (it closed). */
const UNKNOWN_CLIENT = "unknown"

/**
 * The webhook POST handler: Node's `(request, response)`, run as one fiber without effect's router,
 * middleware and response conversion, which cost a fifth of the service's CPU per webhook (README,
 * "Performance"). It does what they did for it: the rate limit and the cap in flight (`Admission`),
 * errors as `{"detail": …}`, the HTTP metrics and the access log line (`Edge`).
 */
export class WebhookIntake extends Context.Service<WebhookIntake, {
  readonly handle: (incoming: IncomingMessage, response: ServerResponse) => void
}>()("chatico/streams/WebhookIntake") {}

/**
 * Stage 1, accept: Meta's verification handshake and the webhook itself. A
 * POST is answered 200 only once every event in it is committed to the journal.
 */
export const AcceptLive = Layer.effect(WebhookIntake, Effect.gen(function*() {
  const clock = yield* Clock.Clock
  const config = yield* AppConfig
  const verifier = yield* SignatureVerifier
  const journal = yield* Journal
  const admission = yield* Admission
  const tracing = yield* TracingOn
  const accessLog = accessLogOn(config)
  // Each request is a fiber of this layer's set: those still running when the server is gone are
  // interrupted with the layer.
  const run = yield* FiberSet.makeRuntime<never, void, never>()

  // Why, in the log (never a secret or the signature); the caller gets the same words.
  const refuse = (
    post: Post,
    trace: RequestTrace | undefined,
    result: string,
    status: number,
    message: string,
    headers?: Record<string, string>
  ) => {
    post.note.refused = message
    return Effect.all([
      Metrics.count(Metrics.webhooks, { result }),
      underSpan(Effect.logWarning("webhook refused").pipe(Effect.annotateLogs({ status, reason: message })), trace?.span)
    ], { discard: true }).pipe(Effect.as(detail(status, message, headers)))
  }

  // Never below one largest body: a budget that could not hold it would refuse that body for ever.
  const budget: BodyBudget = { max: Math.max(config.maxInflightBodyBytes, config.maxBodyBytes), used: 0 }

  const receive = (post: Post, trace: RequestTrace | undefined) => {
    const held = { bytes: 0 }
    return Effect.ensuring(
      receiveHeld(post, trace, held),
      Effect.sync(() => {
        budget.used -= held.bytes
      })
    )
  }

  const receiveHeld = Effect.fnUntraced(function*(post: Post, trace: RequestTrace | undefined, held: { bytes: number }) {
    const started = clock.currentTimeMillisUnsafe()
    const body = yield* readBody(post.incoming, post.response, config.maxBodyBytes, budget, held)
    if (body._tag === "TooLarge") {
      return yield* refuse(post, trace, "too_large", 413, `body exceeds ${config.maxBodyBytes} bytes`, { connection: "close" })
    }
    if (body._tag === "Busy") {
      return yield* refuse(post, trace, "busy", 503, `the webhook body budget (${budget.max} bytes in flight) is spent; retry later`, {
        "retry-after": String(WEBHOOK_RETRY_AFTER_SECONDS),
        connection: "close"
      })
    }
    if (body._tag === "Aborted") return yield* refuse(post, trace, "bad_request", 400, "the request body was not received completely")
    const signatureRefused = verifier.refusal(body.bytes, headerOf(post.incoming, "x-hub-signature-256"))
    if (signatureRefused !== undefined) return yield* refuse(post, trace, "unauthorized", 401, signatureRefused)
    const parsed = parseWebhook(body.bytes, config.maxEventsPerBody)
    if (Result.isFailure(parsed)) {
      return yield* parsed.failure._tag === "WebhookTooManyEvents"
        ? refuse(post, trace, "too_large", 413, parsed.failure.detail)
        : refuse(post, trace, "bad_request", 400, parsed.failure.detail)
    }
    const { object, events } = parsed.success
    const routable = object === "instagram"
    if (!routable) {
      yield* underSpan(
        Effect.logInfo("webhook for another object journaled, not routed").pipe(Effect.annotateLogs({ object, events: events.length })),
        trace?.span
      )
    }
    return yield* journal.record(events, new Date(started), routable, trace).pipe(
      Effect.tap((result) =>
        Metrics.updateAll([
          Metrics.added(Metrics.webhooks, { result: "accepted" }),
          Metrics.added(Metrics.events, { outcome: routable ? "accepted" : "ignored" }, result.fresh),
          Metrics.added(Metrics.events, { outcome: "duplicate" }, result.duplicates),
          Metrics.observed(Metrics.acceptLatency, Metrics.seconds(started, clock.currentTimeMillisUnsafe()))
        ])
      ),
      Effect.map((result): Reply => {
        post.note.events = events.length
        post.note.duplicates = result.duplicates
        if (trace !== undefined) {
          post.note.traceId = trace.span.traceId
          post.note.spanId = trace.span.spanId
        }
        return {
          status: 200,
          body: { status: "ok", events: events.length, duplicates: result.duplicates, event_ids: events.map((event) => event.eventId) }
        }
      }),
      Effect.catchTag("JournalUnavailable", (error) =>
        Effect.andThen(
          underSpan(
            Effect.logWarning("webhook refused: journal unavailable").pipe(
              Effect.annotateLogs({ reason: error.reason, detail: error.detail })
            ),
            trace?.span
          ),
          refuse(post, trace, "unavailable", 503, "events could not be recorded; retry later", {
            "retry-after": String(WEBHOOK_RETRY_AFTER_SECONDS)
          })
        )
      )
    )
  })

  // The span covers the whole request, as effect's HTTP tracer would: admission too.
  const admitted = (post: Post, trace: RequestTrace | undefined): Effect.Effect<Reply> =>
    Effect.flatMap(admission.limit("webhook", post.client, post.note), (limited) =>
      limited !== undefined
        ? Effect.succeed(refused(limited))
        : Effect.map(admission.inflight(post.note, receive(post, trace)), (reply) => isRefusal(reply) ? refused(reply) : reply))

  const answer = (post: Post): Effect.Effect<Reply> =>
    tracing
      ? webhookSpan(
        "POST",
        webhookSpanStart(originForm(post.incoming.url ?? WEBHOOK_PATH), Headers.fromInput(post.incoming.headers), post.client === UNKNOWN_CLIENT ? undefined : post.client),
        (trace) => admitted(post, trace)
      )
      : admitted(post, undefined)

  const write = (post: Post, reply: Reply) => {
    const { incoming, response } = post
    if (response.destroyed || response.headersSent) return
    const text = JSON.stringify(reply.body)
    response.writeHead(reply.status, {
      ...reply.headers,
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text)
    })
    response.end(text)
    if (!incoming.complete && reply.headers?.connection !== "close") dropUnreadBody(incoming, config.maxBodyBytes)
  }

  // A defect is a 500 with its cause in the log, as `Edge` answers any route's.
  const handled = (post: Post, started: number): Effect.Effect<void> =>
    answer(post).pipe(
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.as(Effect.logError("request failed", cause), detail(500, "Internal Server Error"))
      ),
      Effect.flatMap((reply) => {
        write(post, reply)
        return recordAnswered({
          method: "POST",
          route: WEBHOOK_PATH,
          status: reply.status,
          seconds: (performance.now() - started) / 1000,
          client: post.client,
          note: post.note
        }, accessLog)
      })
    )

  const handle = (incoming: IncomingMessage, response: ServerResponse) => {
    const started = performance.now()
    const post: Post = { incoming, response, client: incoming.socket.remoteAddress ?? UNKNOWN_CLIENT, note: {} }
    const fiber = run(handled(post, started))
    // A client gone before its answer: the request stops (its events, if queued, are still committed).
    if (fiber.pollUnsafe() === undefined) {
      response.on("close", () => {
        if (!response.writableEnded) fiber.interruptUnsafe()
      })
    }
  }

  return WebhookIntake.of({ handle })
}))

/** Meta's verification handshake, `GET /webhook`, on the router. */
export const VerifyRoutes = Layer.effectDiscard(Effect.gen(function*() {
  const config = yield* AppConfig
  const router = yield* HttpRouter.HttpRouter
  const verifyToken = Redacted.value(config.webhookVerifyToken)
  const tracing = yield* TracingOn

  const verify = Effect.fnUntraced(function*(request: HttpServerRequest.HttpServerRequest, trace: RequestTrace | undefined) {
    const params = new URL(request.url, "http://localhost").searchParams
    const mode = params.get("hub.mode")
    const token = params.get("hub.verify_token")
    const challenge = params.get("hub.challenge")
    if (mode === "subscribe" && token !== null && challenge !== null && constantTimeEqual(token, verifyToken)) {
      return HttpServerResponse.text(challenge, { contentType: "text/plain" })
    }
    // Which check failed, never the token that was sent.
    const reason = mode !== "subscribe"
      ? "hub.mode is not subscribe"
      : token === null
      ? "no hub.verify_token"
      : challenge === null
      ? "no hub.challenge"
      : "hub.verify_token does not match WEBHOOK_VERIFY_TOKEN"
    noteFor(request.source).refused = reason
    yield* underSpan(Effect.logWarning("webhook verification refused").pipe(Effect.annotateLogs({ reason })), trace?.span)
    return HttpServerResponse.jsonUnsafe({ detail: "verification failed" }, { status: 403 })
  })

  const verifySpanned = (request: HttpServerRequest.HttpServerRequest) =>
    webhookSpan(
      request.method,
      webhookSpanStart(request.url, request.headers, Option.getOrUndefined(request.remoteAddress)),
      (trace) => verify(request, trace)
    )

  // The router ignores trailing slashes, so this also answers /webhook/.
  yield* router.add("GET", WEBHOOK_PATH, tracing ? verifySpanned : (request) => verify(request, undefined))
}))
