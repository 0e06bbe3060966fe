import { assert, describe, it } from "@effect/vitest"
import { allSamples, ExpositionError, parseExposition, sampleValue } from "../support/Prometheus.ts"

// ---------------------------------------------------------------------------------------------
// The exposition reader itself: it must refuse what Prometheus refuses, or the monitoring tests prove nothing.
// ---------------------------------------------------------------------------------------------

describe("Prometheus exposition reader", () => {
  it("reads HELP, TYPE, labels with escapes, and histograms", () => {
    const parsed = parseExposition(
      [
        "# HELP c_total A \\\\ counter\\nwith two lines",
        "# TYPE c_total counter",
        "c_total{a=\"x\\\"y\",b=\"back\\\\slash\",c=\"new\\nline\"} 3",
        "c_total 1e3",
        "# a comment",
        "# TYPE h histogram",
        "h_bucket{k=\"1\",le=\"0.5\"} 1",
        "h_bucket{k=\"1\",le=\"1\"} 2",
        "h_bucket{k=\"1\",le=\"+Inf\"} 2",
        "h_sum{k=\"1\"} 1.25",
        "h_count{k=\"1\"} 2",
        "g NaN",
        ""
      ].join("\n")
    )
    assert.deepStrictEqual([...parsed.keys()], ["c_total", "h", "g"])
    assert.strictEqual(parsed.get("c_total")?.help, "A \\ counter\nwith two lines")
    assert.strictEqual(sampleValue(parsed, "c_total", { a: "x\"y", b: "back\\slash", c: "new\nline" }), 3)
    assert.strictEqual(sampleValue(parsed, "c_total"), 1000)
    assert.strictEqual(sampleValue(parsed, "h_count", { k: "1" }), 2)
    assert.strictEqual(parsed.get("g")?.type, "untyped")
    assert.strictEqual(allSamples(parsed).length, 8)
  })

  it("refuses what Prometheus refuses", () => {
    const bad: ReadonlyArray<readonly [string, string]> = [
      ["no trailing newline", "a 1"],
      ["bad escape", "a{l=\"\\t\"} 1\n"],
      ["unterminated label", "a{l=\"x} 1\n"],
      ["bad value", "a 1x\n"],
      ["bad name", "1a 1\n"],
      ["unknown type", "# TYPE a countr\na 1\n"],
      ["TYPE after samples", "a 1\n# TYPE a gauge\n"],
      ["two TYPEs", "# TYPE a gauge\n# TYPE a gauge\na 1\n"],
      ["repeated series", "a{x=\"1\"} 1\na{x=\"1\"} 2\n"],
      ["split group", "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n"],
      ["negative counter", "# TYPE a counter\na -1\n"],
      [
        "bucket counts go down",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"
      ],
      ["no +Inf bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n"],
      ["+Inf is not _count", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"],
      ["buckets out of order", "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"],
      ["no _sum", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n"]
    ]
    for (const [name, text] of bad) {
      assert.throws(() => parseExposition(text), ExpositionError, undefined, name)
    }
  })
})
