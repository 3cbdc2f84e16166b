// Test helper: the auth app on a fresh database, its own NATS namespace and Redis prefix, driven by app.inject.
import { Writable } from 'node:stream'
import pino from 'pino'
import type { LightMyRequestResponse } from 'fastify'
import { createTestDatabase, testNamespace, testRedisPrefix, testKeys, freePort, waitFor } from '@chat-platform/platform/testing'
import { loggerOptions } from '@chat-platform/platform'
import { loadAuthConfig, type AuthConfig } from '../src/config.ts'
import { createDeps, closeDeps, type AuthDeps } from '../src/deps.ts'
import { buildApp } from '../src/app.ts'
import { migrations } from '../src/db/migrations/index.ts'
import { balanceCacheKey, encodeBalanceCache } from '@chat-platform/contracts'

export interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestApp {
  app: ReturnType<typeof buildApp>
  config: AuthConfig
  deps: AuthDeps
  /** Everything the app and its connections logged, as text (for "never logged" assertions). */
  logs: () => string
  seedBalance: (userId: number, balance: number) => Promise<void>
  register: (body?: Partial<{ email: string, password: string, nickname: string }>) => Promise<{ user_id: number, email: string, password: string }>
  login: (email: string, password: string, remoteAddress?: string) => Promise<LightMyRequestResponse>
  tokenFor: (email: string, password: string) => Promise<string>
  /** argon2 verifications so far (the app's auth_password_verifications_total). */
  verifications: () => Promise<number>
  /** A counter's value in the app's registry. */
  metric: (name: string) => Promise<number>
}

let seq = 0

/**
 * Builds the app against a database cloned from the migrated template. BILLING_URL points at a closed port
 * unless overridden, so `tokens` come from the Redis key a test seeds. Teardown (registered here) closes
 * the app before its database, streams and keys are removed.
 */
export async function buildTestApp (t: Teardown, env: Record<string, string | undefined> = {}): Promise<TestApp> {
  const cleanups: (() => unknown)[] = []
  const scope: Teardown = { teardown: (fn) => { cleanups.push(fn) } }
  t.teardown(async () => { for (const fn of cleanups.reverse()) await fn() })

  const url = await createTestDatabase(scope, { auth: migrations })
  const config = loadAuthConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    DATABASE_URL: url,
    DATABASE_POOL_MAX: '4',
    EVENTS_NAMESPACE: testNamespace(scope),
    REDIS_PREFIX: testRedisPrefix(scope),
    JWT_PRIVATE_KEY: testKeys.privateKey,
    JWT_PUBLIC_KEY: testKeys.publicKey,
    BILLING_URL: `http://127.0.0.1:${await freePort()}`,
    OUTBOX_POLL_MS: '50',
    ...env
  })

  let text = ''
  const stream = new Writable({ write (chunk, _enc, cb) { text += chunk.toString(); cb() } })
  const log = pino(loggerOptions('auth', config.LOG_LEVEL), stream)
  const deps = await createDeps(config, log)
  const app = buildApp(deps, config, { fastify: { logger: undefined, loggerInstance: log } })
  app.addHook('onClose', async () => { await closeDeps(deps) })
  await deps.relay.start()
  await app.ready()
  scope.teardown(() => app.close())
  // Redis commands fail at once until the connection is up (no offline queue), and the login throttle fails open
  // on them: a test counting attempts must not start on a connection still opening (slow under load).
  await waitFor(() => deps.redis.status === 'ready', { what: 'auth redis connection ready' })

  const metric = async (name: string) => {
    const m = app.metrics.getSingleMetric(name)
    if (!m) throw new Error(`${name} is not registered`)
    return (await m.get()).values[0]?.value ?? 0
  }
  const login: TestApp['login'] = (email, password, remoteAddress) =>
    app.inject({ method: 'POST', url: '/api/auth/email-login', payload: { email, password }, remoteAddress })

  return {
    app,
    config,
    deps,
    logs: () => text,
    seedBalance: async (userId, balance) => { await deps.redis.set(balanceCacheKey(userId), encodeBalanceCache({ balance, chat_applied: 0 })) },
    async register (body = {}) {
      const full = { email: `user${++seq}-${Date.now()}@example.com`, password: 'correct horse battery', nickname: 'Ada', ...body }
      const res = await app.inject({ method: 'POST', url: '/api/auth/register', payload: full })
      if (res.statusCode !== 200) throw new Error(`register failed: ${res.statusCode} ${res.body}`)
      return { user_id: res.json().user_id, email: full.email, password: full.password }
    },
    login,
    async tokenFor (email, password) {
      const res = await login(email, password)
      if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
      return res.json().access_token
    },
    verifications: async () => await metric('auth_password_verifications_total'),
    metric
  }
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
