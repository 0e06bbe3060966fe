import { type Clock, Redacted } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpServerResponse } from "effect/http"
import { createHmac, randomBytes } from "node:crypto"
import { constantTimeEqual } from "../../services/ConstantTime.ts"

export const SESSION_COOKIE = "chatico_console"
/** A signed-in session lasts this long; then the operator signs in again. */
export const SESSION_TTL_MS = 8 * 60 * 60 * 1000
/** A visitor's pre-login session (it only carries the login form's CSRF token). */
export const VISITOR_TTL_MS = 60 * 60 * 1000

/** One browser's session: its random id (the CSRF token is derived from it), expiry and whether it signed in. */
export interface Session {
  readonly id: string
  readonly expiresAt: number
  readonly signedIn: boolean
}

export interface Sessions {
  /** The request's valid, unexpired session, if any. */
  read(request: HttpServerRequest.HttpServerRequest): Session | undefined
  visitor(): Session
  signedIn(): Session
  csrfToken(session: Session): string
  csrfValid(session: Session, token: string | undefined): boolean
  /** Sets the cookie of `session` on a response (`Secure` when the request came over HTTPS). */
  attach(
    response: HttpServerResponse.HttpServerResponse,
    session: Session,
    request: HttpServerRequest.HttpServerRequest
  ): HttpServerResponse.HttpServerResponse
  clear(
    response: HttpServerResponse.HttpServerResponse,
    request: HttpServerRequest.HttpServerRequest
  ): HttpServerResponse.HttpServerResponse
}

/** Behind a TLS-terminating proxy the request is plain HTTP with `X-Forwarded-Proto: https`. */
export const overHttps = (request: HttpServerRequest.HttpServerRequest) =>
  request.headers["x-forwarded-proto"]?.split(",")[0]?.trim() === "https" || request.originalUrl.startsWith("https:")

/**
 * Sessions signed with a key derived from `SECRET_KEY` (HMAC-SHA256): the
 * cookie holds no secret, and changing `SECRET_KEY` signs every session out.
 */
export const makeSessions = (secretKey: Redacted.Redacted<string>, clock: Clock.Clock): Sessions => {
  const key = createHmac("sha256", Redacted.value(secretKey)).update("chatico-console-session-v1").digest()
  const mac = (text: string) => createHmac("sha256", key).update(text).digest("base64url")
  const make = (signedIn: boolean, ttl: number): Session => ({
    id: randomBytes(18).toString("base64url"),
    expiresAt: clock.currentTimeMillisUnsafe() + ttl,
    signedIn
  })
  const encode = (session: Session) => {
    const body = `${session.id}.${session.expiresAt}.${session.signedIn ? 1 : 0}`
    return `${body}.${mac(body)}`
  }
  const decode = (value: string): Session | undefined => {
    const parts = value.split(".")
    if (parts.length !== 4) return undefined
    const [id, expires, signed, signature] = parts as [string, string, string, string]
    if (!constantTimeEqual(signature, mac(`${id}.${expires}.${signed}`))) return undefined
    const expiresAt = Number(expires)
    if (!Number.isSafeInteger(expiresAt) || expiresAt <= clock.currentTimeMillisUnsafe()) return undefined
    return { id, expiresAt, signedIn: signed === "1" }
  }
  const cookieOptions = (request: HttpServerRequest.HttpServerRequest, expires: Date) => ({
    path: "/console",
    httpOnly: true,
    sameSite: "strict" as const,
    secure: overHttps(request),
    expires
  })
  const csrfToken = (session: Session) => mac(`csrf.${session.id}`)
  return {
    read: (request) => {
      const value = request.cookies[SESSION_COOKIE]
      return value === undefined ? undefined : decode(value)
    },
    visitor: () => make(false, VISITOR_TTL_MS),
    signedIn: () => make(true, SESSION_TTL_MS),
    csrfToken,
    csrfValid: (session, token) => token !== undefined && token.length > 0 && constantTimeEqual(token, csrfToken(session)),
    attach: (response, session, request) =>
      HttpServerResponse.setCookieUnsafe(response, SESSION_COOKIE, encode(session), cookieOptions(request, new Date(session.expiresAt))),
    clear: (response, request) =>
      HttpServerResponse.setCookieUnsafe(response, SESSION_COOKIE, "", { ...cookieOptions(request, new Date(0)), maxAge: 0 })
  }
}

/** Wrong tokens one client may try per window before the login answers 429. */
export const LOGIN_FAILURES_ALLOWED = 5
export const LOGIN_FAILURE_WINDOW_MS = 60_000
/** Clients whose failures are remembered; the oldest are forgotten first. */
export const LOGIN_TRACKED_CLIENTS = 10_000

/** Failed sign-ins per client address in a fixed window, bounded in memory. */
export const makeLoginThrottle = (clock: Clock.Clock) => {
  const failures = new Map<string, { count: number; windowEnds: number }>()
  const current = (client: string, now: number) => {
    const entry = failures.get(client)
    return entry === undefined || entry.windowEnds <= now ? undefined : entry
  }
  return {
    /** Seconds to wait before trying again, or 0 when the client may try now. */
    retryAfter(client: string): number {
      const now = clock.currentTimeMillisUnsafe()
      const entry = current(client, now)
      return entry !== undefined && entry.count >= LOGIN_FAILURES_ALLOWED ? Math.ceil((entry.windowEnds - now) / 1000) : 0
    },
    failed(client: string) {
      const now = clock.currentTimeMillisUnsafe()
      const entry = current(client, now) ?? { count: 0, windowEnds: now + LOGIN_FAILURE_WINDOW_MS }
      entry.count += 1
      failures.delete(client)
      failures.set(client, entry)
      if (failures.size > LOGIN_TRACKED_CLIENTS) {
        const oldest = failures.keys().next()
        if (!oldest.done) failures.delete(oldest.value)
      }
    },
    succeeded(client: string) {
      failures.delete(client)
    }
  }
}
