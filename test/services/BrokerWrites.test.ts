import amqp from "amqplib"
import { randomUUID } from "node:crypto"
import { beforeAll, describe, expect, it } from "vitest"
import { coalesceWrites } from "../../src/services/Broker.ts"

// The broker's socket, as amqplib keeps it (what coalesceWrites reaches for).
interface Socket {
  _write: (...args: Array<unknown>) => unknown
  _writev?: (...args: Array<unknown>) => unknown
}

const countWrites = (socket: Socket) => {
  const counts = { write: 0, writev: 0 }
  const write = socket._write.bind(socket)
  const writev = socket._writev?.bind(socket)
  socket._write = (...args) => (counts.write++, write(...args))
  if (writev !== undefined) socket._writev = (...args) => (counts.writev++, writev(...args))
  return counts
}

const publishRound = async (coalesce: boolean) => {
  const model = await amqp.connect("amqp://guest:guest@127.0.0.1:5672")
  try {
    if (coalesce) coalesceWrites(model)
    const channel = await model.createConfirmChannel()
    const queue = `chatico.test.writes.${randomUUID()}`
    await channel.assertQueue(queue, { exclusive: true, autoDelete: true })
    const socket = (model as unknown as { connection: { stream: Socket } }).connection.stream
    const counts = countWrites(socket)
    for (let i = 0; i < 100; i++) channel.publish("", queue, Buffer.from(`{"n":${i}}`), { persistent: true })
    await channel.waitForConfirms()
    const check = await channel.checkQueue(queue)
    return { ...counts, messages: check.messageCount }
  } finally {
    await model.close()
  }
}

describe("publishes of one round share a socket write", () => {
  let plain: Awaited<ReturnType<typeof publishRound>>
  let coalesced: Awaited<ReturnType<typeof publishRound>>
  beforeAll(async () => {
    plain = await publishRound(false)
    coalesced = await publishRound(true)
  })

  it("amqplib alone writes each message on its own", () => {
    expect(plain.messages).toBe(100)
    expect(plain.write + plain.writev).toBeGreaterThanOrEqual(100)
  })

  it("coalesced, 100 small messages go out in a few writes, all of them confirmed and queued", () => {
    expect(coalesced.messages).toBe(100)
    expect(coalesced.write + coalesced.writev).toBeLessThanOrEqual(5)
  })
})
