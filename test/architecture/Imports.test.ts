import { describe, expect, it } from "vitest"
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../../src")

const files = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : path.endsWith(".ts") ? [path] : []
  })

/** The files of src/ each file imports (type-only imports included: they are part of the design too). */
const importsOf = (file: string): Array<string> =>
  [...readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)[^"']*?from\s+["'](\.[^"']+)["']/gm)]
    .map((match) => resolve(dirname(file), match[1]!))

/** Every import cycle in src/, each as the list of files around it. */
const cycles = (): Array<Array<string>> => {
  const graph = new Map(files(SRC).map((file) => [file, importsOf(file)]))
  const found: Array<Array<string>> = []
  const state = new Map<string, "open" | "done">()
  const stack: Array<string> = []
  const visit = (file: string) => {
    state.set(file, "open")
    stack.push(file)
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === "open") found.push([...stack.slice(stack.indexOf(next)), next].map((f) => relative(SRC, f)))
      else if (state.get(next) === undefined && graph.has(next)) visit(next)
    }
    stack.pop()
    state.set(file, "done")
  }
  for (const file of graph.keys()) if (state.get(file) === undefined) visit(file)
  return found
}

/** A file in src/ holds one idea; past this many lines it is split. */
const MAX_LINES = 400
/** Files allowed past MAX_LINES, each one idea. */
const LONG_FILES: ReadonlySet<string> = new Set<string>([])

describe("the layout of src/", () => {
  it("has no import cycle", () => {
    expect(cycles()).toEqual([])
  })

  it(`has no file over ${MAX_LINES} lines but the listed ones`, () => {
    const long = files(SRC)
      .map((file) => ({ file: relative(SRC, file), lines: readFileSync(file, "utf8").split("\n").length }))
      .filter(({ file, lines }) => lines > MAX_LINES && !LONG_FILES.has(file))
    expect(long).toEqual([])
  })
})
