/**
 * Watches everything the in-process service logs (its logger writes JSON
 * lines with console.log) for the configured secrets. Tests never configure a
 * secret they don't register here, so "no secret in any log line" holds over
 * the whole suite: TestApp fails its file when a line ever contained one.
 */
const secrets = new Set<string>()
const leaks: Array<string> = []
const taps = new Set<(line: string) => void>()
let installed = false

export const watchSecrets = (...values: ReadonlyArray<string>) => {
  for (const value of values) if (value.length >= 6) secrets.add(value)
  if (installed) return
  installed = true
  const original = console.log.bind(console)
  console.log = (...args: Array<unknown>) => {
    const line = args.map((arg) => (typeof arg === "string" ? arg : String(arg))).join(" ")
    for (const secret of secrets) {
      if (line.includes(secret)) leaks.push(`${secret.slice(0, 3)}…: ${line.slice(0, 200)}`)
    }
    for (const tap of taps) tap(line)
    original(...args)
  }
}

/** The lines that contained a secret so far (with the secret's first characters only). */
export const leakedLines = (): ReadonlyArray<string> => leaks

/** Keeps the service's JSON log lines from now until `stop()` (for tests that look at what was logged). */
export const tapLogLines = () => {
  watchSecrets()
  const lines: Array<string> = []
  const tap = (line: string) => {
    if (line.startsWith("{")) lines.push(line)
  }
  taps.add(tap)
  return { lines, stop: () => taps.delete(tap) }
}
