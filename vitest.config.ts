import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/faults/**", "test/**/*.load.test.ts", "node_modules/**"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each file has its own database and queue prefix, so files may run side by side.
    fileParallelism: true,
    maxWorkers: 2
  }
})
