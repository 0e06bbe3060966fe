import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { JournaledEvent } from "../../src/domain/JournaledEvent.ts"
import { Lanes } from "../../src/services/Lanes.ts"

const event = (eventId: string, entryId: string): JournaledEvent => ({
  eventId,
  object: "instagram",
  field: "comments",
  entryId,
  entryTimeText: null,
  mediaId: null,
  valueRaw: "{}",
  receivedAt: new Date(),
  attempts: 0,
  trace: undefined
})

describe("Lanes", () => {
  it.effect("an event released while a journal read runs is not taken again from that read", () =>
    Effect.gen(function*() {
      const lanes = yield* Lanes
      const [a, b] = [event("a", "k"), event("b", "k")]
      yield* lanes.offer([a])
      assert.strictEqual(yield* lanes.heldCount, 1)
      yield* lanes.reading(Effect.gen(function*() {
        // The read saw `a` still pending; its outcome committed and it was released before the feed.
        yield* lanes.release([a.eventId])
        yield* lanes.feed("k", [a, b])
      }))
      // Only `b` is held: `a` was delivered once.
      assert.strictEqual(yield* lanes.heldCount, 1)
      // A later read (a replay, say) may take `a` again.
      yield* lanes.reading(lanes.feed("k", [a]))
      assert.strictEqual(yield* lanes.heldCount, 2)
    }).pipe(Effect.provide(Lanes.layer)))
})
