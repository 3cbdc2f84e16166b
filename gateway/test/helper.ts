// Test helpers: a real gateway listening on loopback in front of small real HTTP upstreams, and JWT crafting for attacks.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { sign as edSign, createHmac, generateKeyPairSync, randomUUID } from 'node:crypto'
import pino from 'pino'
import { testKeys, testRedisPrefix, testNamespace, freePort } from '@chat-platform/platform/testing'
import { loadGatewayConfig, type GatewayConfig } from '../src/config.ts'
import { createDeps, closeDeps, type GatewayDeps } from '../src/deps.ts'
import { buildApp } from '../src/app.ts'
import type { DnsLookup } from '../src/upstreams.ts'

export interface Teardown { teardown: (fn: () => unknown) => void }

declare global {
  // Tests read many JSON answers; `any` keeps assertions on them short.
  interface Response { json: () => Promise<any> }
}

export interface TestGateway {
  url: string
  app: ReturnType<typeof buildApp>
  config: GatewayConfig
  deps: GatewayDeps
}

/** A gateway on 127.0.0.1:<random>; unset upstream URLs point at closed ports. Closed at teardown. */
export async function startGateway (t: Teardown, env: Record<string, string | undefined> = {}, opts: { lookup?: DnsLookup } = {}): Promise<TestGateway> {
  const config = loadGatewayConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PORT: '0',
    JWT_PUBLIC_KEY: testKeys.publicKey,
    REDIS_PREFIX: env.REDIS_PREFIX ?? testRedisPrefix(t),
    // Its own (empty) AUTH_REVOCATIONS: never the production-named stream of the local NATS.
    EVENTS_NAMESPACE: env.EVENTS_NAMESPACE ?? testNamespace(t),
    AUTH_URL: `http://127.0.0.1:${await freePort()}`,
    CHAT_URL: `http://127.0.0.1:${await freePort()}`,
    BILLING_URL: `http://127.0.0.1:${await freePort()}`,
    ...env
  })
  const log = pino({ level: config.LOG_LEVEL })
  const deps = await createDeps(config, log, opts)
  const app = buildApp(deps, config)
  app.addHook('onClose', async () => { await closeDeps(deps) })
  t.teardown(() => app.close())
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { url, app, config, deps }
}

export interface Seen { method: string, url: string, headers: IncomingMessage['headers'], body: string, replica: string }

export interface TestUpstream {
  url: string
  port: number
  server: Server
  seen: Seen[]
  stop: () => Promise<void>
}

/**
 * A real HTTP server on loopback. The default handler echoes what it received as JSON; pass `handler`
 * to take over (the body is already read into `seen`).
 */
export async function startUpstream (t: Teardown, opts: { name?: string, host?: string, port?: number, handler?: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void } = {}): Promise<TestUpstream> {
  const seen: Seen[] = []
  const name = opts.name ?? 'upstream'
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const entry: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString(), replica: name }
      seen.push(entry)
      if (opts.handler) return opts.handler(req, res, entry)
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ upstream: name, method: entry.method, url: entry.url, headers: entry.headers, body: entry.body }))
    })
  })
  const host = opts.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(opts.port ?? 0, host, () => resolve()) })
  const port = (server.address() as { port: number }).port
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  t.teardown(stop)
  return { url: `http://${host}:${port}`, port, server, seen, stop }
}

const b64url = (v: string | Buffer) => Buffer.from(v).toString('base64url')

/** Builds a JWT by hand (attacks need headers and signatures no honest library makes). */
export function craftToken (header: Record<string, unknown>, payload: Record<string, unknown>, signWith: { ed25519?: string, hmac?: string } = {}): string {
  const data = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`
  let signature = ''
  if (signWith.ed25519) signature = b64url(edSign(null, Buffer.from(data), signWith.ed25519))
  if (signWith.hmac) signature = b64url(createHmac('sha256', signWith.hmac).update(data).digest())
  return `${data}.${signature}`
}

export const claimsFor = (userId: number, extra: Record<string, unknown> = {}) => {
  const now = Math.floor(Date.now() / 1000)
  return { sub: String(userId), iat: now, exp: now + 3600, iss: 'chat-platform', jti: randomUUID(), ...extra }
}

export const otherKeys = (() => {
  const pair = generateKeyPairSync('ed25519')
  return { privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
})()

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
