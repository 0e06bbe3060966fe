import { Context, Layer, Redacted } from "effect"
import { createHmac, createSecretKey, timingSafeEqual } from "node:crypto"
import { AppConfig } from "./AppConfig.ts"

const SIGNATURE = /^sha256=([0-9a-f]{64})$/

/**
 * Checks Meta's `X-Hub-Signature-256` over the exact bytes of a body, in
 * constant time, against every configured key (for rotation, a match with one of them is enough).
 */
export class SignatureVerifier extends Context.Service<SignatureVerifier, {
  verify(body: Uint8Array, header: string | undefined): boolean
  /** Why the signature is refused (which check failed, never a key or the signature), or undefined when it is valid. */
  refusal(body: Uint8Array, header: string | undefined): string | undefined
}>()("chatico/services/SignatureVerifier") {
  static readonly layer = Layer.effect(
    SignatureVerifier,
    AppConfig.useSync((config) => {
      // Key objects made once: building one per request was a measurable share of the CPU.
      const keys = config.webhookSecrets.map((secret) => createSecretKey(Buffer.from(Redacted.value(secret), "utf8")))
      const refusal = (body: Uint8Array, header: string | undefined) => {
        if (header === undefined || header.length === 0) return "no X-Hub-Signature-256"
        const match = SIGNATURE.exec(header)
        if (match === null) return "X-Hub-Signature-256 is not sha256=<64 lowercase hex digits>"
        const given = Buffer.from(match[1]!, "hex")
        // Every key is tried, so the time taken says nothing about which one matched.
        let valid = false
        for (const key of keys) {
          const expected = createHmac("sha256", key).update(body).digest()
          valid = timingSafeEqual(expected, given) || valid
        }
        return valid ? undefined : "signature does not match any configured key"
      }
      return SignatureVerifier.of({
        verify: (body, header) => refusal(body, header) === undefined,
        refusal
      })
    })
  )
}
