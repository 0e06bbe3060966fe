import { defineConfig } from "vitest/config"

// Load tests seed a journal of a million rows and time pages: alone, so neither
// their timings nor the other files' timeouts depend on what runs beside them.
export default defineConfig({
  test: {
    include: ["test/**/*.load.test.ts"],
    exclude: ["node_modules/**"],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    maxWorkers: 1
  }
})
