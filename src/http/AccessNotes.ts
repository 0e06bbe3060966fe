/**
 * What a handler knows about its request that the access log line should say
 * (a webhook's events and duplicates, its own server span), keyed by the
 * underlying Node request so that it survives the router's request copies.
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
