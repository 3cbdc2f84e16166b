// Private nats-server (alone or as a JetStream cluster) and redis-server processes (free ports, temp dir) for tests that stop a server.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs'
import { createServer, connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { waitFor } from './isolation.ts'

interface Teardown { teardown: (fn: () => unknown) => void }

/**
 * Ports below the kernel's ephemeral range (32768–60999 here), so neither a `listen(0)` elsewhere nor the source port
 * of an outgoing connection (every test opens many: Postgres, Redis, NATS) can take a port between the moment it is
 * handed out and the moment a child process listens on it — which a port from `listen(0)` suffered (EADDRINUSE).
 */
const PORT_MIN = 20_000
const PORT_MAX = 32_000
const handedOut = new Set<number>()

const canListen = (port: number) => new Promise<boolean>((resolve) => {
  const s = createServer()
  s.unref()
  s.once('error', () => resolve(false))
  s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
})

/** A port nobody listens on now, chosen at random below the ephemeral range and never twice by one process. */
export async function freePort (): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN))
    if (handedOut.has(port)) continue
    if (await canListen(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error(`no free port between ${PORT_MIN} and ${PORT_MAX}`)
}

const portOpen = (port: number) => new Promise<boolean>((resolve) => {
  const sock = netConnect(port, '127.0.0.1')
  sock.once('connect', () => { sock.destroy(); resolve(true) })
  sock.once('error', () => resolve(false))
})

export interface PrivateServer {
  url: string
  port: number
  /** The server's temp dir (its data; config files written there). */
  dir: string
  /** Its output so far (kept when `keepOutput`; otherwise empty). */
  output: string[]
  /** SIGKILL: a crash. Keeps the data dir for `start`. */
  stop: () => Promise<void>
  start: () => Promise<void>
  /** The running child's pid, if any. */
  pid: () => number | undefined
}

interface ServerSpec {
  scheme: string
  make: (port: number, dir: string) => { cmd: string, args: string[], env?: NodeJS.ProcessEnv }
  port?: number
  /** Ready once this answers truthy (default: the port accepts connections). */
  ready?: (port: number) => Promise<unknown>
  keepOutput?: boolean
  /** Called with the temp dir before the first start (e.g. to write config files into it). */
  prepare?: (dir: string) => void
}

async function privateServer (t: Teardown, spec: ServerSpec): Promise<PrivateServer> {
  const port = spec.port ?? await freePort()
  const dir = mkdtempSync(join(tmpdir(), `${spec.scheme}-`))
  spec.prepare?.(dir)
  let child: ChildProcess | undefined
  const server: PrivateServer = {
    url: `${spec.scheme}://127.0.0.1:${port}`,
    port,
    dir,
    output: [],
    pid: () => child?.pid,
    async start () {
      const { cmd, args, env } = spec.make(port, dir)
      const c = spawn(cmd, args, { stdio: spec.keepOutput ? ['ignore', 'pipe', 'pipe'] : 'ignore', env: env ? { ...process.env, ...env } : process.env })
      child = c
      if (spec.keepOutput) {
        const keep = (b: Buffer) => { server.output.push(b.toString()); if (server.output.length > 2000) server.output.shift() }
        c.stdout!.on('data', keep)
        c.stderr!.on('data', keep)
      }
      await waitFor(async () => {
        if (c.exitCode !== null) throw new Error(`${cmd} exited with ${c.exitCode}: ${server.output.join('').slice(-1000)}`)
        return await (spec.ready ?? portOpen)(port)
      }, { what: `${cmd} on :${port}`, timeoutMs: 30_000 })
    },
    async stop () {
      const c = child
      child = undefined
      if (!c || c.exitCode !== null || c.signalCode !== null) return
      await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL') })
    }
  }
  await server.start()
  t.teardown(async () => { await server.stop(); rmSync(dir, { recursive: true, force: true }) })
  return server
}

const NATS_BIN = () => process.env.NATS_SERVER_BIN ?? 'nats-server'

export interface PrivateNatsOptions {
  /**
   * A config file's text, written as `nats.conf` into the server's temp dir (`{{PORT}}` and `{{DIR}}` are
   * replaced by its port and temp dir). Without it: `-js` on loopback with the temp dir as the store.
   */
  config?: string
  /** Files copied into the temp dir beside the config (for its `include`s, which are relative to it). */
  files?: string[]
  /** Environment of the server (the `$VARIABLES` its config reads). */
  env?: Record<string, string>
  /** Keep the server's output in `output` (e.g. to find permission violations in its log). */
  keepOutput?: boolean
}

export function startPrivateNats (t: Teardown, opts: PrivateNatsOptions = {}): Promise<PrivateServer> {
  const { config } = opts
  return privateServer(t, {
    scheme: 'nats',
    keepOutput: opts.keepOutput,
    prepare: (dir) => { for (const f of opts.files ?? []) copyFileSync(f, join(dir, basename(f))) },
    make: (port, dir) => {
      if (config === undefined) return { cmd: NATS_BIN(), args: ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], env: opts.env }
      writeFileSync(join(dir, 'nats.conf'), config.replaceAll('{{PORT}}', String(port)).replaceAll('{{DIR}}', dir))
      return { cmd: NATS_BIN(), args: ['-c', join(dir, 'nats.conf')], env: opts.env }
    }
  })
}

export interface NatsClusterNode extends PrivateServer {
  name: string
  /** The node's monitoring port (`/healthz`, `/jsz`). */
  httpPort: number
}

export interface NatsCluster {
  /** Every node's client URL, comma-separated: the `NATS_URL` of a client that may connect to any of them. */
  url: string
  nodes: NatsClusterNode[]
  node: (name: string) => NatsClusterNode
}

/** A node answers `/healthz` once its JetStream is current with the cluster (a meta leader is known). */
const healthy = async (httpPort: number) => {
  const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`).catch(() => null)
  return res?.ok === true
}

/**
 * A JetStream cluster of `size` nats-server processes on loopback (`n0`, `n1`, …: cluster routes between all of
 * them, each with its own store in a temp dir), started together; resolves once every node reports healthy and
 * the JetStream API answers through each.
 * A node stopped with `stop()` (SIGKILL) restarts with its data by `start()`.
 */
export async function startNatsCluster (t: Teardown, opts: { size?: number, keepOutput?: boolean } = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), route: await freePort(), http: await freePort() })))
  const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(',')
  const nodes = await Promise.all(ports.map(async (p, i) => {
    const name = `n${i}`
    const server = await privateServer(t, {
      scheme: 'nats',
      port: p.client,
      keepOutput: opts.keepOutput,
      ready: () => healthy(p.http),
      make: (port, dir) => ({
        cmd: NATS_BIN(),
        args: ['-a', '127.0.0.1', '-p', String(port), '-n', name, '-m', String(p.http), '-js', '-sd', dir,
          '--cluster_name', 'test-cluster', '--cluster', `nats://127.0.0.1:${p.route}`, '--routes', routes]
      })
    })
    return Object.assign(server, { name, httpPort: p.http })
  }))
  // Healthy nodes may still be electing the meta leader: ready once the JetStream API answers through each node.
  for (const n of nodes) {
    await waitFor(async () => {
      const nc = await connect({ servers: n.url, timeout: 2_000 })
      try { return await (await jetstreamManager(nc, { timeout: 2_000 })).getAccountInfo() } finally { await nc.close() }
    }, { timeoutMs: 60_000, intervalMs: 200, what: `JetStream through ${n.name}` })
  }
  return {
    url: nodes.map((n) => n.url).join(','),
    nodes,
    node: (name) => {
      const n = nodes.find((x) => x.name === name)
      if (!n) throw new Error(`no node ${name}`)
      return n
    }
  }
}

export function startPrivateRedis (t: Teardown): Promise<PrivateServer> {
  return privateServer(t, { scheme: 'redis', make: (port, dir) => ({ cmd: process.env.REDIS_SERVER_BIN ?? 'redis-server', args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir] }) })
}
