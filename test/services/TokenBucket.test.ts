import { assert, describe, it } from "@effect/vitest"
import { fullBucket, takeToken } from "../../src/services/TokenBucket.ts"

describe("TokenBucket", () => {
  it("gives its capacity at once, then one token per 1/rate, never more than the capacity", () => {
    const bucket = fullBucket(3, 0)
    assert.deepStrictEqual([takeToken(bucket, 0, 2, 3), takeToken(bucket, 0, 2, 3), takeToken(bucket, 0, 2, 3)], [0, 0, 0])
    // Empty: at 2 per second the next token is 500 ms away.
    assert.strictEqual(takeToken(bucket, 0, 2, 3), 500)
    assert.strictEqual(takeToken(bucket, 250, 2, 3), 250)
    assert.strictEqual(takeToken(bucket, 500, 2, 3), 0)
    // A long quiet spell refills to the capacity only.
    const after = [0, 1, 2, 3].map(() => takeToken(bucket, 60_000, 2, 3))
    assert.deepStrictEqual(after, [0, 0, 0, 500])
  })

  it("a lower rate or capacity applies from the next take", () => {
    const bucket = fullBucket(5, 0)
    for (let i = 0; i < 5; i++) assert.strictEqual(takeToken(bucket, 0, 5, 5), 0)
    assert.strictEqual(takeToken(bucket, 0, 0.5, 1), 2000)
    assert.strictEqual(takeToken(bucket, 10_000, 0.5, 1), 0)
    assert.strictEqual(takeToken(bucket, 10_000, 0.5, 1), 2000)
  })
})
