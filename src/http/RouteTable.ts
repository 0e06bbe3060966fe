import { OpenApi } from "effect/http-api"
import { Api } from "./Api.ts"

/** Routes outside the HttpApi, with their methods: the docs, the root redirect. */
const EXTRA_ROUTES: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["/", ["GET"]],
  ["/docs", ["GET"]],
  ["/redoc", ["GET"]],
  ["/redoc/redoc.standalone.js", ["GET"]],
  ["/openapi.json", ["GET"]],
  // The console (src/http/console/Routes.ts).
  ["/console", ["GET"]],
  ["/console/login", ["GET", "POST"]],
  ["/console/logout", ["POST"]],
  ["/console/overview/live", ["GET"]],
  ["/console/apps", ["GET"]],
  ["/console/apps/new", ["GET", "POST"]],
  ["/console/apps/{id}", ["GET", "POST"]],
  ["/console/apps/{id}/toggle", ["POST"]],
  ["/console/apps/{id}/delete", ["GET", "POST"]],
  ["/console/events", ["GET"]],
  ["/console/events/{id}", ["GET"]],
  ["/console/events/{id}/raw", ["GET"]],
  ["/console/events/{id}/replay", ["POST"]],
  ["/console/replay", ["GET", "POST"]]
]

interface Known {
  readonly pattern: RegExp
  readonly methods: ReadonlyArray<string>
}

const toPattern = (template: string) =>
  new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "[^/]+")}/?$`)

const build = (): ReadonlyArray<Known> => {
  const spec = OpenApi.fromApi(Api)
  const fromSpec = Object.entries(spec.paths).map(([template, item]) =>
    [template, Object.keys(item).filter((key) => ["get", "post", "put", "delete", "patch"].includes(key)).map((m) => m.toUpperCase())] as const
  )
  return [...fromSpec, ...EXTRA_ROUTES].map(([template, methods]) => ({
    pattern: toPattern(template),
    // HEAD is answered wherever GET is.
    methods: methods.includes("GET") ? [...methods, "HEAD"] : methods
  }))
}

let table: ReadonlyArray<Known> | undefined

/** The methods a path answers to, when the path is one of ours (for a 405's `Allow`); empty when it is not. */
export const allowedMethods = (path: string): ReadonlyArray<string> => {
  table ??= build()
  const methods = new Set<string>()
  for (const known of table) if (known.pattern.test(path)) for (const method of known.methods) methods.add(method)
  return [...methods]
}
