import { Result, Schema, SchemaIssue } from "effect"

const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

/** Field name → the API's message for it (the first problem of each field). */
export type FieldErrors = Readonly<Record<string, string>>

/**
 * Decodes a payload with the API's own schema, every problem at once, and
 * names each by its top-level field, as the API's 422 `loc` does.
 */
export const decodeWithErrors = <S extends Schema.ConstraintDecoder<unknown>>(schema: S, input: unknown) => {
  const result = Schema.decodeUnknownResult(schema, { errors: "all" })(input)
  if (Result.isSuccess(result)) return { ok: true as const, value: result.success }
  const errors: Record<string, string> = {}
  for (const issue of formatIssues(result.failure.issue).issues) {
    const first = issue.path?.[0]
    const key = first === undefined ? "form" : String(typeof first === "object" ? first.key : first)
    errors[key] ??= issue.message
  }
  return { ok: false as const, errors }
}

/** The form's text fields, trimmed, empty ones left out (an empty filter means "any"). */
export const filled = (form: ReadonlyMap<string, string>, names: ReadonlyArray<string>) => {
  const out: Record<string, string> = {}
  for (const name of names) {
    const value = form.get(name)?.trim()
    if (value !== undefined && value.length > 0) out[name] = value
  }
  return out
}

/** `datetime-local` inputs carry no zone: the console reads and shows times in UTC. */
export const asUtc = (value: string) => (/(Z|[+-]\d{2}:?\d{2})$/.test(value) ? value : `${value}Z`)

/** A service's 422 problems (FastAPI's `[{loc, msg, type}]`) as one sentence for the page. */
export const issuesText = (error: { readonly detail: ReadonlyArray<{ readonly msg: string }> }) =>
  error.detail.map((issue) => issue.msg).join("; ")
