import { createConnection, createServer, type Server, type Socket } from "node:net"

/**
 * A TCP proxy on loopback in front of a real service (Postgres, RabbitMQ), so
 * a test can take "the network" away from the service under test without
 * stopping the shared server other test files use.
 */
export interface TcpProxy {
  readonly port: number
  /** Cuts every open connection and refuses new ones. */
  readonly cut: () => void
  /** Accepts connections again. */
  readonly restore: () => void
  readonly close: () => Promise<void>
}

export const startTcpProxy = (targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<Socket>()
    let open = true
    const server: Server = createServer((client) => {
      if (!open) return client.destroy()
      const upstream = createConnection({ port: targetPort, host: targetHost })
      sockets.add(client)
      sockets.add(upstream)
      const drop = () => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
      }
      client.on("error", drop)
      upstream.on("error", drop)
      client.on("close", drop)
      upstream.on("close", drop)
      client.pipe(upstream)
      upstream.pipe(client)
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        port,
        cut: () => {
          open = false
          for (const socket of sockets) socket.destroy()
          sockets.clear()
        },
        restore: () => {
          open = true
        },
        close: () =>
          new Promise((done) => {
            open = false
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
