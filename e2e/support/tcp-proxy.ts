// A TCP forwarder on loopback that a test can cut and restore, to make one service lose its Postgres (or anything else).
import { connect, createServer, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  /** host:port to connect to instead of the target. */
  host: string
  port: number
  /** Connections accepted since start (those refused while cut included). */
  accepted: number
  /** Drops every open connection and refuses new ones (accepted, then closed at once) until restore(). */
  cut: () => void
  restore: () => void
  close: () => Promise<void>
}

interface Teardown { teardown: (fn: () => unknown) => void }

export async function startTcpProxy (t: Teardown, target: { host: string, port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>()
  let down = false
  const server: Server = createServer((client) => {
    proxy.accepted++
    if (down) { client.destroy(); return }
    const upstream = connect(target.port, target.host)
    open.add(client)
    open.add(upstream)
    const drop = () => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream) }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const proxy: TcpProxy = {
    host: '127.0.0.1',
    port: (server.address() as { port: number }).port,
    accepted: 0,
    cut () {
      down = true
      for (const s of open) s.destroy()
      open.clear()
    },
    restore () { down = false },
    close: () => new Promise((resolve) => {
      proxy.cut()
      server.close(() => resolve())
    })
  }
  t.teardown(proxy.close)
  return proxy
}
