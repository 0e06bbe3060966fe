import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { request } from "node:http"
import { dropDatabase } from "../support/TestDatabase.ts"
import { startService, stopService, waitHealthy, type ServiceProcess } from "../support/ServiceProcess.ts"

/** What the README promises: no sequence of webhook bodies takes the service past this resident size. */
export const RSS_CEILING_MB = 400
const CONCURRENT = 300
const BODY_BYTES = 5 * 1024 * 1024

const rssMb = (service: ServiceProcess): number => {
  const status = readFileSync(`/proc/${service.child.pid}/status`, "utf8")
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0") / 1024
}

/** POSTs `bytes` unsigned, in 64 KiB writes as a real client would; resolves with the status and Retry-After. */
const postUnsigned = (port: number, bytes: Buffer) =>
  new Promise<{ status: number; retryAfter: string | undefined }>((resolve) => {
    const req = request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/webhook",
      headers: { "content-type": "application/json", "content-length": bytes.length }
    }, (response) => {
      response.resume()
      const retryAfter = response.headers["retry-after"]
      response.on("end", () => resolve({ status: response.statusCode ?? 0, retryAfter }))
    })
    // The server may answer and close before the whole body is written: that is an answer too.
    req.on("error", () => resolve({ status: -1, retryAfter: undefined }))
    let offset = 0
    const write = () => {
      while (offset < bytes.length) {
        const chunk = bytes.subarray(offset, offset + 64 * 1024)
        offset += chunk.length
        if (!req.write(chunk)) return void req.once("drain", write)
      }
      req.end()
    }
    write()
  })

describe("memory under unauthenticated bodies", () => {
  it.live(`${CONCURRENT} concurrent unsigned 5 MiB bodies: 401 or 503 + Retry-After, RSS under ${RSS_CEILING_MB} MB`, () =>
    Effect.promise(async () => {
      const database = `chatico_test_memory_${Math.random().toString(36).slice(2, 8)}`
      const service = await startService({
        DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
        LOG_LEVEL: "error",
        ACCESS_LOG: "false"
      })
      try {
        await waitHealthy(service, 60_000)
        const before = rssMb(service)
        let peak = before
        const sampler = setInterval(() => {
          peak = Math.max(peak, rssMb(service))
        }, 20)
        const body = Buffer.alloc(BODY_BYTES, 0x20)
        const answers = await Promise.all(Array.from({ length: CONCURRENT }, () => postUnsigned(service.port, body)))
        clearInterval(sampler)
        peak = Math.max(peak, rssMb(service))
        const byStatus = new Map<number, number>()
        for (const { status } of answers) byStatus.set(status, (byStatus.get(status) ?? 0) + 1)
        console.log(`memory | ${CONCURRENT} x 5 MiB unsigned: RSS ${before.toFixed(0)} MB before, ${peak.toFixed(0)} MB at peak; answers ${JSON.stringify([...byStatus])}`)
        for (const answer of answers) {
          // -1: the connection closed after the 503 before the client finished writing (Connection: close).
          assert.include([401, 503, -1], answer.status)
          if (answer.status === 503) assert.strictEqual(answer.retryAfter, "5")
        }
        assert.isAbove(byStatus.get(401) ?? 0, 0)
        assert.isBelow(peak, RSS_CEILING_MB)
        const health = await fetch(`${service.baseUrl}/monitoring/health`)
        assert.strictEqual(health.status, 200)
      } finally {
        await stopService(service)
        await Effect.runPromise(dropDatabase(database))
      }
    }), 120_000)
})
