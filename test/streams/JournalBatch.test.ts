import { assert, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { parseExposition, sampleValue } from "../support/Prometheus.ts"
import { TestApp } from "../support/TestApp.ts"
import { postWebhook } from "../support/Webhooks.ts"

/** A sample of the /metrics text (0 before the first observation). */
const sample = (text: string, name: string) => sampleValue(parseExposition(text), name) ?? 0

layer(TestApp.layer("journal_batch", { journalBatchWindow: Duration.millis(200), journalBatchRequests: 64 }), {
  excludeTestServices: true,
  timeout: "60 seconds"
})("journal batching", (it) => {
  it.effect("with a window, concurrent webhooks share journal writes, each capped at the batch size", () =>
    Effect.gen(function*() {
      const app = yield* TestApp
      const before = yield* app.request("/metrics")
      const writesBefore = sample(before.text, "chatico_journal_batch_events_count")
      const bodies = Array.from({ length: 40 }, (_, i) =>
        JSON.stringify({
          object: "page",
          entry: [{ id: "1", changes: [{ field: "feed", value: { id: `batch-${i}` } }] }]
        })
      )
      const statuses = yield* Effect.forEach(
        bodies,
        (body) => Effect.map(postWebhook(app, body), (response) => response.status),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(statuses, bodies.map(() => 200))
      const after = yield* app.request("/metrics")
      const writes = sample(after.text, "chatico_journal_batch_events_count") - writesBefore
      const events = sample(after.text, "chatico_journal_batch_events_sum") - sample(before.text, "chatico_journal_batch_events_sum")
      assert.strictEqual(events, 40)
      // 40 webhooks at once, folded by the 200 ms window into a few writes.
      assert.isAtMost(writes, 10)
      assert.isAtLeast(writes, 1)
    }))
})
