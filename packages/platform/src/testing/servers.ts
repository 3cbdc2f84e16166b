// Private nats-server and redis-server processes (free port, temp dir) for tests that stop a server.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor } from './isolation.ts'

interface Teardown { teardown: (fn: () => unknown) => void }

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

const portOpen = (port: number) => new Promise<boolean>((resolve) => {
  const sock = netConnect(port, '127.0.0.1')
  sock.once('connect', () => { sock.destroy(); resolve(true) })
  sock.once('error', () => resolve(false))
})

export interface PrivateServer { url: string, port: number, stop: () => Promise<void>, start: () => Promise<void> }

async function privateServer (t: Teardown, make: (port: number, dir: string) => { cmd: string, args: string[] }, scheme: string): Promise<PrivateServer> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), `${scheme}-`))
  let child: ChildProcess | undefined
  const server: PrivateServer = {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    async start () {
      const { cmd, args } = make(port, dir)
      child = spawn(cmd, args, { stdio: 'ignore' })
      await waitFor(() => portOpen(port), { what: `${cmd} on :${port}` })
    },
    async stop () {
      const c = child
      child = undefined
      if (!c || c.exitCode !== null) return
      await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL') })
    }
  }
  await server.start()
  t.teardown(async () => { await server.stop(); rmSync(dir, { recursive: true, force: true }) })
  return server
}

export function startPrivateNats (t: Teardown): Promise<PrivateServer> {
  return privateServer(t, (port, dir) => ({ cmd: process.env.NATS_SERVER_BIN ?? 'nats-server', args: ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir] }), 'nats')
}

export function startPrivateRedis (t: Teardown): Promise<PrivateServer> {
  return privateServer(t, (port, dir) => ({ cmd: process.env.REDIS_SERVER_BIN ?? 'redis-server', args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir] }), 'redis')
}
