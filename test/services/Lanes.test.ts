import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { JournaledEvent } from "../../src/domain/JournaledEvent.ts"
import { Lanes } from "../../src/services/Lanes.ts"

const event = (eventId: string, entryId: string, attempts: number): JournaledEvent => ({
  eventId,
  object: "instagram",
  field: "comments",
  entryId,
  entryTimeText: null,
  mediaId: null,
  valueRaw: "{}",
  receivedAt: new Date(),
  attempts,
  trace: undefined
})

describe("Lanes", () => {
  it.effect("an event released while a journal read runs is not taken again from that read", () =>
    Effect.gen(function*() {
      const lanes = yield* Lanes
      const [a, b] = [event("a", "k", 0), event("b", "k", 0)]
      yield* lanes.offer([a])
      assert.strictEqual(yield* lanes.heldCount, 1)
      yield* lanes.reading(Effect.gen(function*() {
        // The read saw `a` still pending; its outcome (one publish) committed and it was released
        // before the feed.
        yield* lanes.release([{ eventId: a.eventId, attempts: 1 }])
        yield* lanes.feed("k", [a, b])
      }))
      // Only `b` is held: `a` was delivered once.
      assert.strictEqual(yield* lanes.heldCount, 1)
      // A later read (a replay, say) may take `a` again.
      yield* lanes.reading(lanes.feed("k", [a]))
      assert.strictEqual(yield* lanes.heldCount, 2)
    }).pipe(Effect.provide(Lanes.layer)))

  it.effect("an event released and replayed while a journal read runs is taken from that read", () =>
    Effect.gen(function*() {
      const lanes = yield* Lanes
      const a = event("a", "k", 0)
      yield* lanes.offer([a])
      yield* lanes.reading(Effect.gen(function*() {
        yield* lanes.release([{ eventId: a.eventId, attempts: 1 }])
        // A replay put it back to pending before the read ran: the row it read has its outcome's attempts.
        yield* lanes.feed("k", [event("a", "k", 1)])
      }))
      assert.strictEqual(yield* lanes.heldCount, 1)
    }).pipe(Effect.provide(Lanes.layer)))
})
