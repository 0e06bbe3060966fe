import { defineConfig } from "vitest/config"

// Fault tests stop and cut shared services (the broker app, connections), so
// they run alone, one file at a time, after the main suite.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    maxWorkers: 1
  }
})
