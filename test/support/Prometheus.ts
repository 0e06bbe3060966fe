/**
 * A strict reader of the Prometheus text exposition format (0.0.4), so tests
 * can check that `/metrics` is valid and read values out of it. It throws on
 * anything a Prometheus server would refuse, naming the line.
 */

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped"

export interface Sample {
  /** The sample's own name (`x_bucket`, `x_sum`, … for histograms). */
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
  readonly line: number
}

export interface Family {
  readonly name: string
  readonly type: MetricType
  readonly help: string | undefined
  readonly samples: ReadonlyArray<Sample>
}

export type Exposition = ReadonlyMap<string, Family>

export class ExpositionError extends Error {}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES: ReadonlyArray<MetricType> = ["counter", "gauge", "histogram", "summary", "untyped"]
const isType = (value: string): value is MetricType => TYPES.some((type) => type === value)
const FLOAT = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)$/

/** A sample value or an `le`/`quantile` label: a Go float, `NaN`, `+Inf` or `-Inf`. */
export const parseFloatStrict = (text: string): number | undefined => {
  if (text === "NaN") return Number.NaN
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY
  if (text === "-Inf") return Number.NEGATIVE_INFINITY
  return FLOAT.test(text) ? Number(text) : undefined
}

const unescapeHelp = (text: string, fail: (message: string) => never) =>
  text.replace(/\\(.?)/g, (_, next: string) => {
    if (next === "\\") return "\\"
    if (next === "n") return "\n"
    return fail(`invalid escape \\${next} in HELP`)
  })

/** Reads `{name="value",…}` starting at `text[start] === "{"`; returns the labels and the index after `}`. */
const readLabels = (text: string, start: number, fail: (message: string) => never) => {
  const labels: Record<string, string> = {}
  let i = start + 1
  while (true) {
    if (text[i] === "}") return { labels, end: i + 1 }
    const nameMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i))
    if (nameMatch === null) return fail(`expected a label name at column ${i + 1}`)
    const name = nameMatch[0]
    i += name.length
    if (text[i] !== "=") return fail(`expected '=' after label ${name}`)
    if (text[i + 1] !== "\"") return fail(`expected '"' to open the value of label ${name}`)
    i += 2
    let value = ""
    while (true) {
      const c = text[i]
      if (c === undefined) return fail(`unterminated value of label ${name}`)
      if (c === "\"") break
      if (c === "\n") return fail(`raw newline in the value of label ${name}`)
      if (c === "\\") {
        const next = text[i + 1]
        if (next === "\\") value += "\\"
        else if (next === "\"") value += "\""
        else if (next === "n") value += "\n"
        else return fail(`invalid escape \\${next ?? ""} in the value of label ${name}`)
        i += 2
        continue
      }
      value += c
      i++
    }
    i++ // the closing quote
    if (Object.hasOwn(labels, name)) return fail(`label ${name} given twice`)
    labels[name] = value
    if (text[i] === ",") i++
    else if (text[i] !== "}") return fail(`expected ',' or '}' after label ${name}`)
  }
}

/** The family a sample belongs to: itself, or the histogram/summary its suffix names. */
const familyOf = (sampleName: string, types: ReadonlyMap<string, MetricType>): string => {
  for (const [suffix, kinds] of [["_bucket", ["histogram"]], ["_sum", ["histogram", "summary"]], [
    "_count",
    ["histogram", "summary"]
  ]] as const) {
    if (sampleName.endsWith(suffix)) {
      const base = sampleName.slice(0, -suffix.length)
      const type = types.get(base)
      if (type !== undefined && kinds.some((kind) => kind === type)) return base
    }
  }
  return sampleName
}

const seriesKey = (name: string, labels: Readonly<Record<string, string>>, without?: string) =>
  `${name}{${
    Object.keys(labels).filter((key) => key !== without).sort().map((key) => `${key}=${JSON.stringify(labels[key])}`)
      .join(",")
  }}`

/** Checks one histogram: per series, `le` ascending and cumulative, a `+Inf` bucket equal to `_count`, and a `_sum`. */
const checkHistogram = (family: Family, fail: (message: string) => never) => {
  interface Series {
    buckets: Array<{ le: number; count: number }>
    count: number | undefined
    sum: number | undefined
  }
  const series = new Map<string, Series>()
  const get = (key: string) => {
    let found = series.get(key)
    if (found === undefined) {
      found = { buckets: [], count: undefined, sum: undefined }
      series.set(key, found)
    }
    return found
  }
  for (const sample of family.samples) {
    if (sample.name === `${family.name}_bucket`) {
      const le = sample.labels["le"]
      if (le === undefined) fail(`${sample.name} on line ${sample.line} has no le label`)
      const bound = parseFloatStrict(le ?? "")
      if (bound === undefined || Number.isNaN(bound)) fail(`le="${le}" on line ${sample.line} is not a number`)
      get(seriesKey(family.name, sample.labels, "le")).buckets.push({ le: bound ?? 0, count: sample.value })
    } else if (sample.name === `${family.name}_count`) {
      if (Object.hasOwn(sample.labels, "le")) fail(`${sample.name} on line ${sample.line} has an le label`)
      get(seriesKey(family.name, sample.labels)).count = sample.value
    } else if (sample.name === `${family.name}_sum`) {
      if (Object.hasOwn(sample.labels, "le")) fail(`${sample.name} on line ${sample.line} has an le label`)
      get(seriesKey(family.name, sample.labels)).sum = sample.value
    } else {
      fail(`${sample.name} on line ${sample.line} is not a sample of histogram ${family.name}`)
    }
  }
  for (const [key, { buckets, count, sum }] of series) {
    if (buckets.length === 0) fail(`histogram ${key} has no buckets`)
    for (let i = 1; i < buckets.length; i++) {
      const previous = buckets[i - 1]!
      const current = buckets[i]!
      if (!(current.le > previous.le)) fail(`histogram ${key}: le ${current.le} does not follow ${previous.le}`)
      if (current.count < previous.count) {
        fail(`histogram ${key}: bucket le=${current.le} (${current.count}) < le=${previous.le} (${previous.count})`)
      }
    }
    const last = buckets[buckets.length - 1]!
    if (last.le !== Number.POSITIVE_INFINITY) fail(`histogram ${key} has no le="+Inf" bucket`)
    if (count === undefined) fail(`histogram ${key} has no _count`)
    if (sum === undefined) fail(`histogram ${key} has no _sum`)
    if (last.count !== count) fail(`histogram ${key}: +Inf bucket ${last.count} != _count ${count}`)
  }
}

/** Parses a whole exposition; throws `ExpositionError` at the first line that is not valid. */
export const parseExposition = (text: string): Exposition => {
  if (text.length > 0 && !text.endsWith("\n")) throw new ExpositionError("the exposition must end with a newline")
  const lines = text.split("\n")
  if (lines[lines.length - 1] === "") lines.pop()

  const types = new Map<string, MetricType>()
  const helps = new Map<string, string>()
  const samples = new Map<string, Array<Sample>>()
  const order: Array<string> = []
  const finished = new Set<string>()
  const seen = new Set<string>()
  let current: string | undefined

  /** Marks `name`'s group as the current one; a family's lines must be one contiguous group. */
  const enter = (name: string, fail: (message: string) => never) => {
    if (current === name) return
    if (current !== undefined) finished.add(current)
    if (finished.has(name)) fail(`the lines of ${name} are not one contiguous group`)
    current = name
    if (!order.includes(name)) order.push(name)
  }

  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!
    const lineNo = index + 1
    const fail = (message: string): never => {
      throw new ExpositionError(`line ${lineNo}: ${message}: ${JSON.stringify(line)}`)
    }
    if (line.trim() === "") continue
    if (line.startsWith("#")) {
      const match = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line)
      if (match === null) continue // a plain comment
      const [, keyword, name = "", rest = ""] = match
      if (!METRIC_NAME.test(name)) fail(`invalid metric name ${name}`)
      if (keyword === "HELP") {
        if (helps.has(name)) fail(`second HELP for ${name}`)
        helps.set(name, unescapeHelp(rest, fail))
        enter(name, fail)
      } else {
        if (types.has(name)) fail(`second TYPE for ${name}`)
        if (samples.has(name)) fail(`TYPE for ${name} after its samples`)
        const type = rest.trim()
        if (!isType(type)) fail(`unknown type ${type}`)
        if (isType(type)) types.set(name, type)
        enter(name, fail)
      }
      continue
    }

    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)
    if (nameMatch === null) fail("expected a metric name")
    const name = nameMatch?.[0] ?? ""
    let i = name.length
    let labels: Record<string, string> = {}
    if (line[i] === "{") {
      const read = readLabels(line, i, fail)
      labels = read.labels
      i = read.end
    }
    for (const label of Object.keys(labels)) {
      if (!LABEL_NAME.test(label) || label.startsWith("__")) fail(`invalid label name ${label}`)
    }
    const rest = line.slice(i)
    const valueMatch = /^[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(rest)
    if (valueMatch === null) fail("expected a value (and an optional integer timestamp) after the name and labels")
    const value = parseFloatStrict(valueMatch?.[1] ?? "")
    if (value === undefined) fail(`value ${valueMatch?.[1]} is not a number`)

    const family = familyOf(name, types)
    const type = types.get(family) ?? "untyped"
    if ((type === "counter") && (value ?? 0) < 0) fail(`counter ${name} is negative`)
    if (type === "summary" && name === family && labels["quantile"] === undefined) {
      fail(`summary sample ${name} without a quantile label`)
    }
    if (type !== "histogram" && Object.hasOwn(labels, "le") && type !== "untyped") {
      fail(`le label on a ${type}`)
    }
    const key = seriesKey(name, labels)
    if (seen.has(key)) fail(`series ${key} given twice`)
    seen.add(key)
    enter(family, fail)
    const list = samples.get(family) ?? []
    list.push({ name, labels, value: value ?? Number.NaN, line: lineNo })
    samples.set(family, list)
  }

  const families = new Map<string, Family>()
  for (const name of order) {
    const family: Family = {
      name,
      type: types.get(name) ?? "untyped",
      help: helps.get(name),
      samples: samples.get(name) ?? []
    }
    families.set(name, family)
    if (family.type === "histogram") {
      checkHistogram(family, (message) => {
        throw new ExpositionError(message)
      })
    }
  }
  return families
}

const sameLabels = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && a[key] === b[key])
}

/** The value of the sample with exactly this name and these labels, or `undefined`. */
export const sampleValue = (
  exposition: Exposition,
  name: string,
  labels: Readonly<Record<string, string>> = {}
): number | undefined => {
  for (const family of exposition.values()) {
    for (const sample of family.samples) {
      if (sample.name === name && sameLabels(sample.labels, labels)) return sample.value
    }
  }
  return undefined
}

/** Every sample, across families. */
export const allSamples = (exposition: Exposition): ReadonlyArray<Sample> =>
  [...exposition.values()].flatMap((family) => family.samples)
