// Starts the real system as separate processes (gateway, auth, chat, billing) on free ports, against a
// fresh database, a unique NATS namespace and Redis prefix, for end-to-end tests and benchmarks.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { INTERNAL_PATH_PREFIX, INTERNAL_TOKEN_HEADER } from '@chat-platform/contracts'
import { authInternal, billingInternal, chatInternal } from '@chat-platform/platform'
import { freePort, testKeys, waitFor, TEST_NATS_URL, TEST_REDIS_URL, testNamespace, testRedisPrefix, dbUrl, typescriptArgs, withoutCoverage } from '@chat-platform/platform/testing'

export type ProcName = 'auth' | 'chat' | 'billing' | 'gateway'
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DIRS: Record<ProcName, string> = { auth: 'services/auth', chat: 'services/chat', billing: 'services/billing', gateway: 'gateway' }
const BUILD = `${ROOT}scripts/build.mjs`

/**
 * How a process is run: its TypeScript sources through tap's loader, as the test process itself runs them (tests
 * only; their coverage counts: see platform's testing/coverage.ts), or the bundle `scripts/build.mjs` writes to
 * dist/ (what `pnpm start`, the images and the bench run; never counted).
 */
export type Runtime = 'sources' | 'dist'
const command = (runtime: Runtime): string[] => runtime === 'sources' ? [...typescriptArgs(), 'src/server.ts'] : ['--enable-source-maps', 'dist/server.mjs']

let built: Promise<unknown> | undefined
/**
 * Builds the four bundles once per test process. Test files starting together each build too: the build writes a
 * file only when its content changed, through a rename, so a process never starts from a half-written bundle.
 */
export function buildDist (): Promise<unknown> {
  built ??= promisify(execFile)(process.execPath, [BUILD, '--quiet'], { cwd: ROOT }).catch((err) => {
    built = undefined
    throw new Error(`scripts/build.mjs failed: ${err.stderr || err.message}`)
  })
  return built
}

interface Teardown { teardown: (fn: () => unknown) => void }

// A child killed by a signal keeps exitCode null (signalCode is set instead).
const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

export interface SystemOptions {
  /** Which processes to run (default all four). */
  procs?: ProcName[]
  /** Extra environment for every process (e.g. OPENAI_BASE_URL of a fake server). */
  env?: Record<string, string>
  /** Extra environment per process. */
  procEnv?: Partial<Record<ProcName, Record<string, string>>>
  natsUrl?: string
  redisUrl?: string
  /** Reach Postgres through this address (e.g. a cuttable TCP proxy) for these processes; same database. */
  databaseVia?: Partial<Record<ProcName, { host: string, port: number }>>
  /** Keep process output in memory and print it when a process dies unexpectedly (default true). */
  echoOnCrash?: boolean
  /** Extra replicas per process besides the first (same environment, own free port), all started at the same instant. */
  replicas?: Partial<Record<ProcName, number>>
  /** How long a process may take to answer /healthz after it was spawned (default 60 s; many processes booting at once on few cores need more). */
  startTimeoutMs?: number
  /** `sources` (default, under tap only: the TypeScript through tap's loader) or `dist` (`buildDist()` first, then plain node, as in production). */
  runtime?: Runtime
}

/** `replica` is 1, 2, … for the extra replicas of a process (absent on the first one). */
export interface Proc { name: ProcName, port: number, url: string, child?: ChildProcess, output: string[], replica?: number }

export class System {
  readonly procs = new Map<ProcName, Proc>()
  /** Extra replicas by process name (the `replicas` option, or `addReplica`). */
  readonly replicas = new Map<ProcName, Proc[]>()
  readonly env: Record<string, string>
  readonly databaseUrl: string
  readonly opts: SystemOptions

  constructor (env: Record<string, string>, databaseUrl: string, opts: SystemOptions) {
    this.env = env
    this.databaseUrl = databaseUrl
    this.opts = opts
  }

  get gatewayUrl (): string { return this.url('gateway') }
  url (name: ProcName): string {
    const p = this.procs.get(name)
    if (!p) throw new Error(`${name} is not part of this system`)
    return p.url
  }

  /** The typed clients of the services' internal endpoints (their first process each), carrying INTERNAL_TOKEN. */
  get internal () {
    const opts = (service: ProcName) => ({ service, token: this.env.INTERNAL_TOKEN })
    return { auth: authInternal(this.url('auth'), opts('auth')), billing: billingInternal(this.url('billing'), opts('billing')), chat: chatInternal(this.url('chat'), opts('chat')) }
  }

  /** Every process of `name`: the first one, then its replicas. */
  instances (name: ProcName): Proc[] {
    const p = this.procs.get(name)
    return p ? [p, ...(this.replicas.get(name) ?? [])] : []
  }

  /** Adds one more replica of `name` on its own free port, with the same environment; start it with `startProc`. */
  async addReplica (name: ProcName): Promise<Proc> {
    if (!this.procs.has(name)) throw new Error(`${name} is not part of this system`)
    const list = this.replicas.get(name) ?? []
    this.replicas.set(name, list)
    const port = await freePort()
    const p: Proc = { name, port, url: `http://127.0.0.1:${port}`, output: [], replica: list.length + 1 }
    list.push(p)
    return p
  }

  /** Starts (or restarts) a process and waits until its /healthz answers. */
  async start (name: ProcName): Promise<void> {
    const p = this.procs.get(name)
    if (!p) throw new Error(`unknown process ${name}`)
    await this.startProc(p)
  }

  /** `start` for any instance, replicas included. */
  async startProc (p: Proc): Promise<void> {
    if (p.child && !exited(p.child)) return
    const name = p.replica ? `${p.name}#${p.replica}` : p.name
    let env: NodeJS.ProcessEnv = { ...process.env, ...this.env, ...this.opts.procEnv?.[p.name], PORT: String(p.port) }
    if (this.opts.runtime === 'dist') env = withoutCoverage(env)
    const via = this.opts.databaseVia?.[p.name]
    if (via) {
      const u = new URL(this.env.DATABASE_URL)
      u.hostname = via.host
      u.port = String(via.port)
      Object.assign(env, { DATABASE_URL: u.toString() })
    }
    const child = spawn(process.execPath, command(this.opts.runtime ?? 'sources'), { cwd: `${ROOT}${DIRS[p.name]}`, env, stdio: ['ignore', 'pipe', 'pipe'] })
    p.child = child
    p.output = []
    const keep = (b: Buffer) => { p.output.push(b.toString()); if (p.output.length > 2000) p.output.shift() }
    child.stdout!.on('data', keep)
    child.stderr!.on('data', keep)
    child.once('exit', (code, signal) => {
      if (p.child === child && code !== 0 && signal === null && this.opts.echoOnCrash !== false) {
        process.stderr.write(`[system] ${name} exited with ${code}:\n${p.output.join('').slice(-4000)}\n`)
      }
    })
    await waitFor(async () => {
      if (exited(child)) throw new Error(`${name} exited with ${child.exitCode ?? child.signalCode}: ${p.output.join('').slice(-2000)}`)
      const res = await fetch(`${p.url}/healthz`).catch(() => null)
      return res?.ok
    }, { timeoutMs: this.opts.startTimeoutMs ?? 60_000, intervalMs: 100, what: `${name} /healthz` })
  }

  /** Stops a process: SIGTERM drains it gracefully, SIGKILL is a crash. */
  async stop (name: ProcName, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const p = this.procs.get(name)
    return p ? await this.stopProc(p, signal) : null
  }

  /** `stop` for any instance, replicas included. */
  async stopProc (p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = p.child
    if (!child || exited(child)) return child?.exitCode ?? null
    const done = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    try { return await done } finally { clearTimeout(timer) }
  }

  async stopAll (): Promise<void> {
    // The gateway first, billing last, so in-flight work drains into live consumers.
    for (const name of ['gateway', 'chat', 'auth', 'billing'] as ProcName[]) await Promise.all(this.instances(name).map((p) => this.stopProc(p)))
  }

  /** A JSON request to the gateway (or another process with `to`). */
  async request (method: string, path: string, opts: { token?: string, body?: unknown, headers?: Record<string, string>, to?: ProcName } = {}) {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.token) headers.authorization = `Bearer ${opts.token}`
    // A service's own /internal/ routes need the internal token (the gateway never routes them).
    if (opts.to !== undefined && opts.to !== 'gateway' && path.startsWith(INTERNAL_PATH_PREFIX)) headers[INTERNAL_TOKEN_HEADER] ??= this.env.INTERNAL_TOKEN
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${this.url(opts.to ?? 'gateway')}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) })
    const text = await res.text()
    let body: any = text
    try { body = text ? JSON.parse(text) : undefined } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, body }
  }
}

/** Starts the system for a test; everything (processes, database, streams, keys) is removed at teardown. */
export async function startSystem (t: Teardown, opts: SystemOptions = {}): Promise<System> {
  const names = opts.procs ?? ['auth', 'billing', 'chat', 'gateway']
  const natsUrl = opts.natsUrl ?? TEST_NATS_URL
  const redisUrl = opts.redisUrl ?? TEST_REDIS_URL
  const dbName = `e2e_${randomBytes(5).toString('hex')}`
  const databaseUrl = dbUrl(dbName)
  const ports: Record<string, number> = {}
  for (const n of ['auth', 'chat', 'billing', 'gateway']) ports[n] = await freePort()
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.E2E_LOG_LEVEL ?? 'warn',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    NATS_URL: natsUrl,
    REDIS_URL: redisUrl,
    EVENTS_NAMESPACE: testNamespace(t, natsUrl),
    REDIS_PREFIX: testRedisPrefix(t, redisUrl),
    JWT_PRIVATE_KEY: testKeys.privateKey,
    JWT_PUBLIC_KEY: testKeys.publicKey,
    // Internal calls carry it, as in production: every journey runs with /internal/ closed to strangers.
    INTERNAL_TOKEN: randomBytes(24).toString('hex'),
    AUTH_URL: `http://127.0.0.1:${ports.auth}`,
    CHAT_URL: `http://127.0.0.1:${ports.chat}`,
    BILLING_URL: `http://127.0.0.1:${ports.billing}`,
    OUTBOX_POLL_MS: '200',
    SHUTDOWN_GRACE_MS: '15000',
    // An automatic title is a charge no message carries (assertExactBalance counts message tokens): the tests of titles turn it on.
    CHAT_AUTO_TITLE: 'false',
    ...opts.env
  }
  if (opts.runtime === 'dist') await buildDist()
  const system = new System(env, databaseUrl, opts)
  for (const n of names) system.procs.set(n, { name: n, port: ports[n], url: `http://127.0.0.1:${ports[n]}`, output: [] })
  for (const n of names) for (let i = 0; i < (opts.replicas?.[n] ?? 0); i++) await system.addReplica(n)
  t.teardown(async () => {
    await system.stopAll()
    const admin = new pg.Client({ connectionString: dbUrl('postgres') })
    await admin.connect()
    try { await admin.query(`drop database if exists "${dbName}" with (force)`) } finally { await admin.end() }
  })
  // Services first (they create and migrate the database, racing safely), then the gateway.
  try {
    await Promise.all(names.filter((n) => n !== 'gateway').flatMap((n) => system.instances(n)).map((p) => system.startProc(p)))
    await Promise.all(system.instances('gateway').map((p) => system.startProc(p)))
  } catch (err) {
    // A failed start usually ends the test file before its teardown runs: stop what was spawned, or it outlives us.
    await system.stopAll()
    throw err
  }
  return system
}
