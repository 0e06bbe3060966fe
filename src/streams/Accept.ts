import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Layer, Redacted, Result } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { parseWebhook } from "../domain/Webhook.ts"
import { AppConfig } from "../layers/Config.ts"
import { constantTimeEqual } from "../services/ConstantTime.ts"
import { SignatureVerifier } from "../services/SignatureVerifier.ts"
import * as Metrics from "../services/Metrics.ts"
import { Journal } from "./Journal.ts"

/** Seconds Meta is asked to wait before redelivering after a 503. */
export const RETRY_AFTER_SECONDS = 5

type BodyRead = { readonly _tag: "Body"; readonly bytes: Uint8Array } | { readonly _tag: "TooLarge" } | {
  readonly _tag: "Aborted"
}

/** Reads the raw body, stopping as soon as it passes `maxBytes`. */
const readBody = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  Effect.callback<BodyRead>((resume) => {
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const declared = Number(incoming.headers["content-length"])
    if (Number.isFinite(declared) && declared > maxBytes) return resume(Effect.succeed({ _tag: "TooLarge" }))
    const chunks: Array<Buffer> = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBytes) {
        cleanup()
        resume(Effect.succeed({ _tag: "TooLarge" }))
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
    return Effect.sync(cleanup)
  })

const detail = (status: number, message: string, headers?: Record<string, string>) =>
  HttpServerResponse.jsonUnsafe({ detail: message }, { status, ...(headers === undefined ? {} : { headers }) })

/**
 * Stage 1, accept: Meta's verification handshake and the webhook itself. A
 * POST is answered 200 only once every event in it is committed to the journal.
 */
export const AcceptRoutes = Layer.effectDiscard(Effect.gen(function*() {
  const config = yield* AppConfig
  const verifier = yield* SignatureVerifier
  const journal = yield* Journal
  const router = yield* HttpRouter.HttpRouter
  const verifyToken = Redacted.value(config.webhookVerifyToken)

  const verify = Effect.fnUntraced(function*(request: HttpServerRequest.HttpServerRequest) {
    const params = new URL(request.url, "http://localhost").searchParams
    const mode = params.get("hub.mode")
    const token = params.get("hub.verify_token")
    const challenge = params.get("hub.challenge")
    if (mode === "subscribe" && token !== null && challenge !== null && constantTimeEqual(token, verifyToken)) {
      return HttpServerResponse.text(challenge, { contentType: "text/plain" })
    }
    yield* Effect.logWarning("webhook verification refused")
    return HttpServerResponse.text("verification failed", { status: 403 })
  })

  const refuse = (result: string, status: number, message: string, headers?: Record<string, string>) =>
    Effect.as(Metrics.count(Metrics.webhooks, { result }), detail(status, message, headers))

  const receive = Effect.fnUntraced(function*(request: HttpServerRequest.HttpServerRequest) {
    const started = Date.now()
    const body = yield* readBody(request, config.maxBodyBytes)
    if (body._tag === "TooLarge") {
      return yield* refuse("too_large", 413, `body exceeds ${config.maxBodyBytes} bytes`, { connection: "close" })
    }
    if (body._tag === "Aborted") return yield* refuse("bad_request", 400, "the request body was not received completely")
    if (!verifier.verify(body.bytes, request.headers["x-hub-signature-256"])) {
      return yield* refuse("unauthorized", 401, "missing or invalid X-Hub-Signature-256")
    }
    const parsed = parseWebhook(body.bytes)
    if (Result.isFailure(parsed)) return yield* refuse("bad_request", 400, parsed.failure.detail)
    const { object, events } = parsed.success
    const routable = object === "instagram"
    if (!routable) {
      yield* Effect.logInfo("webhook for another object journaled, not routed").pipe(
        Effect.annotateLogs({ object, events: events.length })
      )
    }
    return yield* journal.record(events, new Date(started), routable).pipe(
      Effect.tap((result) =>
        Effect.all([
          Metrics.count(Metrics.webhooks, { result: "accepted" }),
          Metrics.count(Metrics.events, { outcome: routable ? "accepted" : "ignored" }, result.fresh),
          Metrics.count(Metrics.events, { outcome: "duplicate" }, result.duplicates),
          Metrics.observe(Metrics.acceptLatency, Metrics.seconds(started))
        ], { discard: true })
      ),
      Effect.map((result) =>
        HttpServerResponse.jsonUnsafe({ status: "ok", events: events.length, duplicates: result.duplicates })
      ),
      Effect.catchTag("JournalUnavailable", (error) =>
        Effect.andThen(
          Effect.logWarning("webhook refused: journal unavailable").pipe(
            Effect.annotateLogs({ reason: error.reason, detail: error.detail })
          ),
          refuse("unavailable", 503, "events could not be recorded; retry later", {
            "retry-after": String(RETRY_AFTER_SECONDS)
          })
        )
      )
    )
  })

  // The router ignores trailing slashes, so these also answer /webhook/.
  yield* router.add("GET", "/webhook", verify)
  yield* router.add("POST", "/webhook", receive)
}))
