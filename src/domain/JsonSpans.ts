/**
 * Span scanner of webhook bodies. It runs only over text JSON.parse has already accepted, so it can
 * trust the grammar; it is iterative (a depth counter, no recursion) so any nesting depth is safe.
 */

/** Half-open `[start, end)` range of one JSON value in the body text. */
export interface Span {
  readonly start: number
  readonly end: number
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d

const isWhitespace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

const skipWhitespace = (s: string, i: number): number => {
  while (i < s.length && isWhitespace(s.charCodeAt(i))) i++
  return i
}

/** `i` is at the opening quote; returns the index after the closing quote. */
const skipString = (s: string, i: number): number => {
  let from = i + 1
  for (;;) {
    const quote = s.indexOf("\"", from)
    if (quote === -1) return s.length
    let k = quote - 1
    while (s.charCodeAt(k) === BACKSLASH) k--
    // An even run of backslashes escapes only itself, so this quote ends the string.
    if ((quote - 1 - k) % 2 === 0) return quote + 1
    from = quote + 1
  }
}

/** `i` is at the first character of a value; returns the index after its last character. */
const skipValue = (s: string, i: number): number => {
  const first = s.charCodeAt(i)
  if (first === QUOTE) return skipString(s, i)
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    // number, true, false or null: runs until a delimiter
    while (i < s.length) {
      const c = s.charCodeAt(i)
      if (c === COMMA || c === CLOSE_BRACE || c === CLOSE_BRACKET || isWhitespace(c)) break
      i++
    }
    return i
  }
  let depth = 0
  while (i < s.length) {
    const c = s.charCodeAt(i)
    if (c === QUOTE) {
      i = skipString(s, i)
      continue
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
      if (depth === 0) return i + 1
    }
    i++
  }
  return s.length
}

/**
 * Walks the members of the object starting at `start`, handing each decoded key and the start of
 * its value to `visit`, which returns the end of that value. Returns the end of the object.
 */
const scanObject = (s: string, start: number, visit: (key: string, valueStart: number) => number): number => {
  if (s.charCodeAt(start) !== OPEN_BRACE) return skipValue(s, start)
  let i = skipWhitespace(s, start + 1)
  if (s.charCodeAt(i) === CLOSE_BRACE) return i + 1
  while (i < s.length) {
    const keyEnd = skipString(s, i)
    const rawKey = s.slice(i + 1, keyEnd - 1)
    // Escaped keys (`"\u0065ntry"`) are rare; JSON.parse decodes them as it did when building the value.
    const key = rawKey.includes("\\") ? decodeKey(s.slice(i, keyEnd)) : rawKey
    i = skipWhitespace(s, keyEnd)
    i = skipWhitespace(s, i + 1) // past ':'
    i = skipWhitespace(s, visit(key, i))
    if (s.charCodeAt(i) !== COMMA) return i + 1
    i = skipWhitespace(s, i + 1)
  }
  return s.length
}

const decodeKey = (quoted: string): string => {
  const key: unknown = JSON.parse(quoted)
  return typeof key === "string" ? key : ""
}

/** Walks the elements of the array starting at `start`, as `scanObject` walks members. */
const scanArray = (s: string, start: number, visit: (elementStart: number) => number): number => {
  if (s.charCodeAt(start) !== OPEN_BRACKET) return skipValue(s, start)
  let i = skipWhitespace(s, start + 1)
  if (s.charCodeAt(i) === CLOSE_BRACKET) return i + 1
  while (i < s.length) {
    i = skipWhitespace(s, visit(i))
    if (s.charCodeAt(i) !== COMMA) return i + 1
    i = skipWhitespace(s, i + 1)
  }
  return s.length
}

/** The span of member `key` of the object starting at `start`; a repeated key keeps its last span, as JSON.parse does. */
export const memberSpan = (s: string, start: number, key: string): Span | undefined => {
  let span: Span | undefined
  scanObject(s, start, (k, at) => {
    const end = skipValue(s, at)
    if (k === key) span = { start: at, end }
    return end
  })
  return span
}

/** Where the parts of one entry lie in the body. Repeated keys keep their last occurrence, as JSON.parse does. */
export interface EntrySpans {
  /** The whole entry. */
  whole: Span
  id: Span | undefined
  time: Span | undefined
  value: Span | undefined
  /** The span of each change's `value`. */
  changes: Array<Span | undefined> | undefined
  messaging: Array<Span> | undefined
  standby: Array<Span> | undefined
}

const scanItems = (s: string, at: number, items: Array<Span>): number =>
  scanArray(s, at, (itemStart) => {
    const end = skipValue(s, itemStart)
    items.push({ start: itemStart, end })
    return end
  })

const scanEntry = (s: string, start: number, spans: EntrySpans): number =>
  scanObject(s, start, (key, at) => {
    if (key === "changes") {
      const changes: Array<Span | undefined> = []
      spans.changes = changes
      return scanArray(s, at, (changeStart) => {
        let value: Span | undefined
        const end = scanObject(s, changeStart, (k, valueStart) => {
          const valueEnd = skipValue(s, valueStart)
          if (k === "value") value = { start: valueStart, end: valueEnd }
          return valueEnd
        })
        changes.push(value)
        return end
      })
    }
    if (key === "messaging") return scanItems(s, at, spans.messaging = [])
    if (key === "standby") return scanItems(s, at, spans.standby = [])
    const end = skipValue(s, at)
    if (key === "id") spans.id = { start: at, end }
    else if (key === "time") spans.time = { start: at, end }
    else if (key === "value") spans.value = { start: at, end }
    return end
  })

/** One pass over the body locating every entry's parts. */
export const scanEntries = (s: string): Array<EntrySpans> => {
  let entries: Array<EntrySpans> = []
  scanObject(s, skipWhitespace(s, 0), (key, at) => {
    if (key !== "entry") return skipValue(s, at)
    const found: Array<EntrySpans> = []
    entries = found
    return scanArray(s, at, (entryStart) => {
      const spans: EntrySpans = {
        whole: { start: entryStart, end: entryStart },
        id: undefined,
        time: undefined,
        value: undefined,
        changes: undefined,
        messaging: undefined,
        standby: undefined
      }
      found.push(spans)
      const end = scanEntry(s, entryStart, spans)
      spans.whole = { start: entryStart, end }
      return end
    })
  })
  return entries
}
