/**
 * What a handler adds to its request's access log line, keyed by the underlying Node request so
 * that it survives the router's request copies.
 */
export interface AccessNote {
  events?: number
  duplicates?: number
  /** Why the request was refused, when it was (never a secret). */
  refused?: string
  traceId?: string
  spanId?: string
}

const notes = new WeakMap<object, AccessNote>()

export const noteFor = (source: object): AccessNote => {
  let note = notes.get(source)
  if (note === undefined) {
    note = {}
    notes.set(source, note)
  }
  return note
}

export const takeNote = (source: object): AccessNote | undefined => {
  const note = notes.get(source)
  if (note !== undefined) notes.delete(source)
  return note
}
