/** One token bucket's state: tokens left, and when they were last counted (ms). */
export interface TokenBucket {
  tokens: number
  updated: number
}

export const fullBucket = (capacity: number, now: number): TokenBucket => ({ tokens: capacity, updated: now })

/**
 * Refills `bucket` up to `now` at `perSecond`, at most to `capacity`, and takes one token when there
 * is one. Returns 0 when a token was taken, else the milliseconds until one will be there.
 */
export const takeToken = (bucket: TokenBucket, now: number, perSecond: number, capacity: number): number => {
  bucket.tokens = Math.min(capacity, bucket.tokens + ((now - bucket.updated) * perSecond) / 1000)
  bucket.updated = now
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1
    return 0
  }
  return Math.ceil(((1 - bucket.tokens) * 1000) / perSecond)
}
