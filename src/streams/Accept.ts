import { NodeHttpServerRequest } from "@effect/platform-node"
import { Clock, Effect, Exit, Layer, Option, Redacted, Result, type Tracer } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse, HttpTraceContext } from "effect/http"
import { parseWebhook } from "../domain/Webhook.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { constantTimeEqual } from "../services/ConstantTime.ts"
import { SignatureVerifier } from "../services/SignatureVerifier.ts"
import * as Metrics from "../services/Metrics.ts"
import { type RequestTrace, TracingOn, underSpan, validTracestate, withOwnSpan } from "../services/TraceContext.ts"
import { noteFor } from "../http/AccessNotes.ts"
import { WEBHOOK_PATH, WEBHOOK_RETRY_AFTER_SECONDS } from "../http/WebhookPath.ts"
import { Journal } from "./Journal.ts"

type BodyRead =
  | { readonly _tag: "Body"; readonly bytes: Uint8Array }
  | { readonly _tag: "TooLarge" }
  | { readonly _tag: "Aborted" }
  | { readonly _tag: "Busy" }

/**
 * The webhook body bytes held at once across requests, reserved as they arrive and given back when
 * answered, so unauthenticated bodies cannot raise memory without bound.
 */
export interface BodyBudget {
  readonly max: number
  used: number
}

/** Answers a client waiting on `Expect: 100-continue` before its body is read (Node leaves it to us). */
const sendContinue = (request: HttpServerRequest.HttpServerRequest) => {
  const expect = request.headers["expect"]
  if (expect === undefined || expect.toLowerCase() !== "100-continue") return
  const response = NodeHttpServerRequest.toServerResponse(request)
  if (!response.headersSent) response.writeContinue()
}

/** Reads the raw body, stopping as soon as it passes `maxBytes` or the budget is spent. `held` receives the bytes reserved. */
const readBody = (request: HttpServerRequest.HttpServerRequest, maxBytes: number, budget: BodyBudget, held: { bytes: number }) =>
  Effect.callback<BodyRead>((resume) => {
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const declared = Number(incoming.headers["content-length"])
    if (Number.isFinite(declared) && declared > maxBytes) return resume(Effect.succeed({ _tag: "TooLarge" }))
    const reserve = (bytes: number) => {
      if (budget.used + bytes > budget.max) return false
      budget.used += bytes
      held.bytes += bytes
      return true
    }
    const upFront = Number.isFinite(declared) && declared > 0 ? declared : 0
    if (!reserve(upFront)) return resume(Effect.succeed({ _tag: "Busy" }))
    const chunks: Array<Buffer> = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBytes) {
        cleanup()
        resume(Effect.succeed({ _tag: "TooLarge" }))
        return
      }
      if (size > upFront && !reserve(size - Math.max(upFront, size - chunk.length))) {
        cleanup()
        resume(Effect.succeed({ _tag: "Busy" }))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed({ _tag: "Body", bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) }))
    }
    const onError = () => {
      cleanup()
      resume(Effect.succeed({ _tag: "Aborted" }))
    }
    const cleanup = () => {
      incoming.off("data", onData)
      incoming.off("end", onEnd)
      incoming.off("error", onError)
      incoming.off("aborted", onError)
    }
    incoming.on("data", onData)
    incoming.on("end", onEnd)
    incoming.on("error", onError)
    incoming.on("aborted", onError)
    sendContinue(request)
    return Effect.sync(cleanup)
  })

/**
 * The server span's kind, parent and attributes, built without intermediate objects, and the
 * caller's `tracestate` when the parent is a W3C `traceparent`.
 */
const webhookSpanStart = (request: HttpServerRequest.HttpServerRequest) => {
  const url = request.url
  const query = url.indexOf("?")
  const attributes: Record<string, unknown> = {
    "http.request.method": request.method,
    "http.route": WEBHOOK_PATH,
    "url.path": query === -1 ? url : url.slice(0, query),
    "url.scheme": "http"
  }
  const userAgent = request.headers["user-agent"]
  if (userAgent !== undefined) attributes["user_agent.original"] = userAgent
  if (Option.isSome(request.remoteAddress)) attributes["client.address"] = request.remoteAddress.value
  const w3c = HttpTraceContext.w3c(request.headers)
  const parent = Option.isSome(w3c) ? w3c : HttpTraceContext.fromHeaders(request.headers)
  const options: Tracer.SpanOptionsNoTrace = Option.isSome(parent)
    ? { kind: "server", parent: parent.value, attributes }
    : { kind: "server", root: true, attributes }
  return { options, tracestate: Option.isSome(w3c) ? validTracestate(request.headers["tracestate"]) : undefined }
}

/**
 * The webhook request's server span, made here because effect's HTTP tracer costs too much per request
 * (README, "Tracing cost"). The query string (the verification token) is never recorded.
 */
const webhookSpan = <E, R>(
  request: HttpServerRequest.HttpServerRequest,
  handler: (trace: RequestTrace) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) => {
  const { options, tracestate } = webhookSpanStart(request)
  return withOwnSpan(
    `${request.method} ${WEBHOOK_PATH}`,
    options,
    (span) => handler({ span, tracestate }),
    (exit, span) => {
      if (Exit.isFailure(exit)) return exit
      span.attribute("http.response.status_code", exit.value.status)
      // As OpenTelemetry's HTTP conventions say: only a 5xx answer is an error of the server span.
      return exit.value.status >= 500 ? Exit.fail(new Error(`answered ${exit.value.status}`)) : exit
    }
  )
}

const detail = (status: number, message: string, headers?: Record<string, string>) =>
  HttpServerResponse.jsonUnsafe({ detail: message }, { status, ...(headers === undefined ? {} : { headers }) })

/**
 * Stage 1, accept: Meta's verification handshake and the webhook itself. A
 * POST is answered 200 only once every event in it is committed to the journal.
 */
export const AcceptRoutes = Layer.effectDiscard(Effect.gen(function*() {
  const clock = yield* Clock.Clock
  const config = yield* AppConfig
  const verifier = yield* SignatureVerifier
  const journal = yield* Journal
  const router = yield* HttpRouter.HttpRouter
  const verifyToken = Redacted.value(config.webhookVerifyToken)
  const tracing = yield* TracingOn
  // The request's trace is handed to the handler (the journal keeps it), not put in the
  // context; the few log lines of a request get the span with `underSpan`.
  const traced = (
    handler: (request: HttpServerRequest.HttpServerRequest, trace: RequestTrace | undefined) => Effect.Effect<HttpServerResponse.HttpServerResponse>
  ) =>
    tracing
      ? (request: HttpServerRequest.HttpServerRequest) => webhookSpan(request, (trace) => handler(request, trace))
      : (request: HttpServerRequest.HttpServerRequest) => handler(request, undefined)

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
    return detail(403, "verification failed")
  })

  // Why, in the log (never a secret or the signature); the caller gets the same words.
  const refuse = (
    request: HttpServerRequest.HttpServerRequest,
    trace: RequestTrace | undefined,
    result: string,
    status: number,
    message: string,
    headers?: Record<string, string>
  ) => {
    noteFor(request.source).refused = message
    return Effect.all([
      Metrics.count(Metrics.webhooks, { result }),
      underSpan(Effect.logWarning("webhook refused").pipe(Effect.annotateLogs({ status, reason: message })), trace?.span)
    ], { discard: true }).pipe(Effect.as(detail(status, message, headers)))
  }

  // Never below one largest body: a budget that could not hold it would refuse that body for ever.
  const budget: BodyBudget = { max: Math.max(config.maxInflightBodyBytes, config.maxBodyBytes), used: 0 }

  const receive = (request: HttpServerRequest.HttpServerRequest, trace: RequestTrace | undefined) => {
    const held = { bytes: 0 }
    return Effect.ensuring(
      receiveHeld(request, trace, held),
      Effect.sync(() => {
        budget.used -= held.bytes
      })
    )
  }

  const receiveHeld = Effect.fnUntraced(function*(
    request: HttpServerRequest.HttpServerRequest,
    trace: RequestTrace | undefined,
    held: { bytes: number }
  ) {
    const started = clock.currentTimeMillisUnsafe()
    const body = yield* readBody(request, config.maxBodyBytes, budget, held)
    if (body._tag === "TooLarge") {
      return yield* refuse(request, trace, "too_large", 413, `body exceeds ${config.maxBodyBytes} bytes`, { connection: "close" })
    }
    if (body._tag === "Busy") {
      return yield* refuse(request, trace, "busy", 503, `the webhook body budget (${budget.max} bytes in flight) is spent; retry later`, {
        "retry-after": String(WEBHOOK_RETRY_AFTER_SECONDS),
        connection: "close"
      })
    }
    if (body._tag === "Aborted") return yield* refuse(request, trace, "bad_request", 400, "the request body was not received completely")
    const signatureRefused = verifier.refusal(body.bytes, request.headers["x-hub-signature-256"])
    if (signatureRefused !== undefined) return yield* refuse(request, trace, "unauthorized", 401, signatureRefused)
    const parsed = parseWebhook(body.bytes, config.maxEventsPerBody)
    if (Result.isFailure(parsed)) {
      return yield* parsed.failure._tag === "WebhookTooManyEvents"
        ? refuse(request, trace, "too_large", 413, parsed.failure.detail)
        : refuse(request, trace, "bad_request", 400, parsed.failure.detail)
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
        Effect.all([
          Metrics.count(Metrics.webhooks, { result: "accepted" }),
          Metrics.count(Metrics.events, { outcome: routable ? "accepted" : "ignored" }, result.fresh),
          Metrics.count(Metrics.events, { outcome: "duplicate" }, result.duplicates),
          Metrics.observe(Metrics.acceptLatency, Metrics.seconds(started, clock.currentTimeMillisUnsafe()))
        ], { discard: true })
      ),
      Effect.map((result) => {
        const note = noteFor(request.source)
        note.events = events.length
        note.duplicates = result.duplicates
        if (trace !== undefined) {
          note.traceId = trace.span.traceId
          note.spanId = trace.span.spanId
        }
        return HttpServerResponse.jsonUnsafe({
          status: "ok",
          events: events.length,
          duplicates: result.duplicates,
          event_ids: events.map((event) => event.eventId)
        })
      }),
      Effect.catchTag("JournalUnavailable", (error) =>
        Effect.andThen(
          underSpan(
            Effect.logWarning("webhook refused: journal unavailable").pipe(
              Effect.annotateLogs({ reason: error.reason, detail: error.detail })
            ),
            trace?.span
          ),
          refuse(request, trace, "unavailable", 503, "events could not be recorded; retry later", {
            "retry-after": String(WEBHOOK_RETRY_AFTER_SECONDS)
          })
        )
      )
    )
  })

  // The router ignores trailing slashes, so these also answer /webhook/.
  yield* router.add("GET", WEBHOOK_PATH, traced(verify))
  yield* router.add("POST", WEBHOOK_PATH, traced(receive))
}))
