import { Effect, Layer, Redacted } from "effect"
import { SchemaIssue } from "effect"
import { HttpApiMiddleware } from "effect/http-api"
import { AppConfig } from "../services/AppConfig.ts"
import { constantTimeEqual } from "../services/ConstantTime.ts"
import { Authorization, RequestValidation } from "./Api.ts"
import type { ValidationIssue } from "../domain/Errors.ts"
import { Unauthorized, ValidationError } from "./Errors.ts"

export const AuthorizationLive = Layer.effect(
  Authorization,
  Effect.gen(function*() {
    const { secretKey } = yield* AppConfig
    return Authorization.of({
      bearer: (httpEffect, { credential }) => {
        const token = Redacted.value(credential)
        return token.length > 0 && constantTimeEqual(token, Redacted.value(secretKey))
          ? httpEffect
          : Effect.fail(new Unauthorized({ detail: "missing or invalid bearer token" }))
      }
    })
  })
)

const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

const slotNames = { Params: "path", Query: "query", Payload: "body", Headers: "header" } as const

const segment = (key: PropertyKey): string | number => typeof key === "number" ? key : String(key)

/** Every problem in an issue tree, each with where it is: what FastAPI lists in a 422. */
export const validationIssues = (
  issue: SchemaIssue.Issue,
  loc: ReadonlyArray<string | number>
): Array<ValidationIssue> => {
  switch (issue._tag) {
    case "Pointer":
      return validationIssues(issue.issue, [...loc, ...issue.path.map(segment)])
    case "Composite":
      return issue.issues.flatMap((inner) => validationIssues(inner, loc))
    case "Encoding":
      return validationIssues(issue.issue, loc)
    case "AnyOf": {
      // A payload is decoded as a union of its content types' schemas: one member means one schema.
      const [only, ...others] = issue.issues
      if (only !== undefined && others.length === 0) return validationIssues(only, loc)
      return formatted(issue, loc)
    }
    case "MissingKey":
      return [{ loc, msg: "Field required", type: "missing" }]
    case "UnexpectedKey":
      return [{ loc, msg: "Extra inputs are not permitted", type: "extra_forbidden" }]
    default:
      return formatted(issue, loc)
  }
}

const formatted = (issue: SchemaIssue.Issue, loc: ReadonlyArray<string | number>): Array<ValidationIssue> =>
  formatIssues(issue).issues.map((one) => ({
    loc: [...loc, ...(one.path ?? []).map((key) => segment(typeof key === "object" ? key.key : key))],
    msg: one.message,
    type: issue._tag === "InvalidType" ? "type_error" : "value_error"
  }))

export const RequestValidationLive = HttpApiMiddleware.layerSchemaErrorTransform(
  RequestValidation,
  (error) => {
    // Response encoding failures are our bug, not the caller's: keep them a 500.
    if (error.kind === "Body" || error.kind === "ResponseHeaders") return Effect.die(error)
    return Effect.fail(new ValidationError({ detail: validationIssues(error.cause.issue, [slotNames[error.kind]]) }))
  }
)
