import { Option, Schema, Struct } from "effect"
import { Headers } from "effect/http"

// What Meta answers a media lookup: the errors it can mean, the response and usage headers decoded,
// and the classification of its error codes. `GraphApi.ts` makes the calls.

// ---------------------------------------------------------------------------------------------
// Errors: one error, one reason per way Meta can fail us.
// ---------------------------------------------------------------------------------------------

/** Meta throttles us (codes 4, 17, 32, 613, 80000–80014, HTTP 429), or our own limiter says wait. */
export class RateLimited extends Schema.TaggedClass<RateLimited>()("RateLimited", {
  /** How long calls are paused from now. */
  retryAfterMillis: Schema.Number,
  detail: Schema.String
}) {}

/** Worth trying again soon: codes 1 and 2, HTTP 5xx, timeouts, broken connections, garbled bodies. */
export class Transient extends Schema.TaggedClass<Transient>()("Transient", {
  detail: Schema.String
}) {}

/** Code 190: the access token expired or was revoked. Nothing works until it is replaced. */
export class TokenInvalid extends Schema.TaggedClass<TokenInvalid>()("TokenInvalid", {
  detail: Schema.String
}) {}

/** Codes 10, 100, 200–299 (permission, unknown object) and other 4xx: this media will not resolve. */
export class Permanent extends Schema.TaggedClass<Permanent>()("Permanent", {
  code: Schema.NullOr(Schema.Number),
  detail: Schema.String
}) {}

/** Meta answered, but without `owner` (the token's user did not create the media). */
export class NoOwner extends Schema.TaggedClass<NoOwner>()("NoOwner", {
  username: Schema.NullOr(Schema.String),
  detail: Schema.String
}) {}

/** Too many lookups failed in a row (or the token was rejected): calls are stopped for a while. */
export class CircuitOpen extends Schema.TaggedClass<CircuitOpen>()("CircuitOpen", {
  retryAfterMillis: Schema.Number,
  detail: Schema.String
}) {}

/** `INSTAGRAM_ACCESS_TOKEN` is not set. */
export class NotConfigured extends Schema.TaggedClass<NotConfigured>()("NotConfigured", {
  detail: Schema.String
}) {}

/** The one error of the GraphApi service. Never carries the access token or the appsecret_proof. */
export class GraphApiError extends Schema.TaggedError<GraphApiError>()("GraphApiError", {
  mediaId: Schema.String,
  reason: Schema.Union([RateLimited, Transient, TokenInvalid, Permanent, NoOwner, CircuitOpen, NotConfigured])
}) {
  override get message() {
    return `Graph API, media ${this.mediaId}: ${this.reason._tag}: ${this.reason.detail}`
  }
}

export type GraphApiFailure = GraphApiError["reason"]

// ---------------------------------------------------------------------------------------------
// Meta's answers, decoded.
// ---------------------------------------------------------------------------------------------

/** `GET /{media-id}?fields=owner,username`: a media, or `{"error": …}`. */
/** Meta may leave out any key of what it answers. */
const everyKeyOptional = <const Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(fields).mapFields(Struct.map(Schema.optionalKey))

const GraphResponse = Schema.Struct({
  id: Schema.optionalKey(Schema.String),
  username: Schema.optionalKey(Schema.String),
  owner: Schema.optionalKey(Schema.Struct({ id: Schema.String })),
  error: Schema.optionalKey(everyKeyOptional({
    message: Schema.String,
    type: Schema.String,
    code: Schema.Number,
    error_subcode: Schema.Number,
    is_transient: Schema.Boolean
  }))
})
type GraphResponse = typeof GraphResponse.Type
type GraphErrorBody = NonNullable<GraphResponse["error"]>
export const decodeResponse = Schema.decodeUnknownOption(Schema.fromJsonString(GraphResponse))

/** One usage report: percentages of the quota, and minutes until throttling ends. */
const Usage = everyKeyOptional({
  call_count: Schema.Number,
  total_cputime: Schema.Number,
  total_time: Schema.Number,
  acc_id_util_pct: Schema.Number,
  estimated_time_to_regain_access: Schema.Number
})
type Usage = typeof Usage.Type
const decodeAppUsage = Schema.decodeUnknownOption(Schema.fromJsonString(Usage))
/** `X-Business-Use-Case-Usage`: per business id, a list of usage reports. */
const decodeBusinessUsage = Schema.decodeUnknownOption(
  Schema.fromJsonString(Schema.Record(Schema.String, Schema.Array(Usage)))
)

/** The highest usage percentage and the longest regain time in a response's usage headers. */
export const readUsage = (headers: Headers.Headers): { readonly percent: number | null; readonly regainMinutes: number } => {
  const app = Option.flatMap(Headers.get(headers, "x-app-usage"), decodeAppUsage)
  const business = Option.flatMap(Headers.get(headers, "x-business-use-case-usage"), decodeBusinessUsage)
  const reports: ReadonlyArray<Usage> = [
    ...Option.toArray(app),
    ...Option.match(business, { onNone: () => [], onSome: (byBusiness) => Object.values(byBusiness).flat() })
  ]
  let percent: number | null = null
  let regainMinutes = 0
  for (const report of reports) {
    for (const value of [report.call_count, report.total_cputime, report.total_time, report.acc_id_util_pct]) {
      if (value !== undefined && Number.isFinite(value)) percent = Math.max(percent ?? 0, value)
    }
    const regain = report.estimated_time_to_regain_access
    if (regain !== undefined && Number.isFinite(regain)) regainMinutes = Math.max(regainMinutes, regain)
  }
  return { percent, regainMinutes }
}

// ---------------------------------------------------------------------------------------------
// Classification (Meta's error codes, https://developers.facebook.com/docs/graph-api/guides/error-handling).
// ---------------------------------------------------------------------------------------------

const THROTTLE_CODES: ReadonlySet<number> = new Set([4, 17, 32, 613])
const TRANSIENT_CODES: ReadonlySet<number> = new Set([1, 2])
const TOKEN_INVALID_CODE = 190

const isThrottleCode = (code: number) => THROTTLE_CODES.has(code) || (code >= 80000 && code <= 80014)
const isPermanentCode = (code: number) => code === 10 || code === 100 || (code >= 200 && code <= 299)

type FailureKind = "RateLimited" | "Transient" | "TokenInvalid" | "Permanent"

/**
 * What a failed response means: known codes first, then 429 throttled, 5xx transient, any other 4xx
 * permanent (Meta says the request itself is wrong, so asking again cannot help).
 */
export const classify = (status: number, error: GraphErrorBody | undefined): FailureKind => {
  const code = error?.code
  if (code !== undefined) {
    if (isThrottleCode(code)) return "RateLimited"
    if (code === TOKEN_INVALID_CODE) return "TokenInvalid"
    if (TRANSIENT_CODES.has(code) || error?.is_transient === true) return "Transient"
    if (isPermanentCode(code)) return "Permanent"
  }
  if (status === 429) return "RateLimited"
  if (status >= 500 || status < 400) return "Transient"
  return "Permanent"
}

