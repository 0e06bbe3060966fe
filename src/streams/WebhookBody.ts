/** The webhook body, read raw from Node's request within a size limit and a byte budget shared by all requests. */
import { Effect } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"

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
const sendContinue = (incoming: IncomingMessage, response: ServerResponse) => {
  const expect = incoming.headers.expect
  if (expect === undefined || expect.toLowerCase() !== "100-continue") return
  if (!response.headersSent) response.writeContinue()
}

/** Reads the raw body, stopping as soon as it passes `maxBytes` or the budget is spent. `held` receives the bytes reserved. */
export const readBody = (
  incoming: IncomingMessage,
  response: ServerResponse,
  maxBytes: number,
  budget: BodyBudget,
  held: { bytes: number }
) =>
  Effect.callback<BodyRead>((resume) => {
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
    sendContinue(incoming, response)
    return Effect.sync(cleanup)
  })

/**
 * A body left unread by an answer (a refusal before or while reading it): read and dropped up to
 * `maxBytes`, so a keep-alive connection stays usable, and past that the connection is closed.
 */
export const dropUnreadBody = (incoming: IncomingMessage, maxBytes: number) => {
  if (incoming.complete || incoming.destroyed) return
  let bytes = 0
  incoming.on("data", (chunk: Buffer) => {
    bytes += chunk.length
    if (bytes > maxBytes) {
      incoming.pause()
      incoming.socket.destroy()
    }
  })
  incoming.resume()
}

