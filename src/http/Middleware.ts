import { Effect, Layer, Redacted } from "effect"
import { SchemaIssue } from "effect"
import { HttpApiMiddleware } from "effect/http-api"
import { AppConfig } from "../layers/Config.ts"
import { constantTimeEqual } from "../services/ConstantTime.ts"
import { Authorization, RequestValidation } from "./Api.ts"
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

export const RequestValidationLive = HttpApiMiddleware.layerSchemaErrorTransform(
  RequestValidation,
  (error) => {
    // Response encoding failures are our bug, not the caller's: keep them a 500.
    if (error.kind === "Body" || error.kind === "ResponseHeaders") return Effect.die(error)
    const slot = slotNames[error.kind]
    const detail = formatIssues(error.cause.issue).issues.map((issue) => ({
      loc: [slot, ...(issue.path ?? []).map((segment) => {
        const key = typeof segment === "object" ? segment.key : segment
        return typeof key === "number" ? key : String(key)
      })],
      msg: issue.message
    }))
    return Effect.fail(new ValidationError({ detail }))
  }
)
