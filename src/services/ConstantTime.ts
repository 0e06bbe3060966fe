import { createHash, timingSafeEqual } from "node:crypto"

// Hashing first gives both sides one length, so neither the comparison's time
// nor an early length check tells an attacker anything about the secret.
const digest = (value: string | Uint8Array) => createHash("sha256").update(value).digest()

/** Compares two secrets in time independent of where they differ. */
export const constantTimeEqual = (a: string | Uint8Array, b: string | Uint8Array): boolean =>
  timingSafeEqual(digest(a), digest(b))
