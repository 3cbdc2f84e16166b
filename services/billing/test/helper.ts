// Test helpers: a billing app on a fresh database, namespace and Redis prefix; event builders and publishers.
import { randomUUID } from 'node:crypto'
import pino from 'pino'
import { jetstream } from '@nats-io/jetstream'
import { namespaced, Subjects, type UsageRecorded, type UserRegistered } from '@chat-platform/contracts'
import { ensureStreams } from '@chat-platform/platform'
import { createTestDatabase, testNamespace, testRedisPrefix, testKeys, signTestToken, waitFor, TEST_NATS_URL, TEST_REDIS_URL } from '@chat-platform/platform/testing'
import { loadBillingConfig, type BillingConfig } from '../src/config.ts'
import { createDeps, closeDeps, type BillingDeps } from '../src/deps.ts'
import { buildApp } from '../src/app.ts'
import { migrations } from '../src/db/migrations/index.ts'
import { SCHEMA } from '../src/db/database.ts'

export interface Teardown { teardown: (fn: () => unknown) => void }

export const silent = pino({ level: 'silent' })

/** Environment of a test billing process: its own database, namespace and Redis prefix. */
export async function testEnv (t: Teardown, overrides: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: await createTestDatabase(t, { [SCHEMA]: migrations }),
    EVENTS_NAMESPACE: testNamespace(t),
    REDIS_PREFIX: testRedisPrefix(t),
    NATS_URL: TEST_NATS_URL,
    REDIS_URL: TEST_REDIS_URL,
    JWT_PUBLIC_KEY: testKeys.publicKey,
    BILLING_RETRY_DELAY_MS: '50',
    // Billing alone: no auth runs here, so every user id is taken as known (the check is tested end to end).
    BILLING_CHECK_USERS: 'false',
    ...overrides
  }
}

/** Creates the streams billing consumes, as their producers (chat: CHAT_USAGE, auth: AUTH_EVENTS) do at boot. */
export async function createProducerStreams (deps: Pick<BillingDeps, 'nc'>, namespace: string): Promise<void> {
  const ns = namespaced(namespace)
  await ensureStreams(deps.nc, [ns.streams.CHAT_USAGE, ns.streams.AUTH_EVENTS], { maxAgeDays: 1, replicas: 1 })
}

/**
 * Connections and consumers for `env` (not started), closed at teardown. The producers' streams are created
 * first unless `streams: false` (billing booted before chat and auth).
 */
export async function testDeps (t: Teardown, env: Record<string, string>, opts: { streams?: boolean } = {}): Promise<{ deps: BillingDeps, config: BillingConfig }> {
  const config = loadBillingConfig(env)
  const deps = await createDeps(config, silent)
  t.teardown(() => closeDeps(deps))
  if (opts.streams !== false) await createProducerStreams(deps, env.EVENTS_NAMESPACE)
  await waitFor(() => deps.redis.status === 'ready', { what: 'redis' })
  return { deps, config }
}

export async function buildTestApp (t: Teardown, overrides: Record<string, string> = {}, opts: { prepare?: (deps: BillingDeps) => void } = {}) {
  const env = await testEnv(t, overrides)
  const config = loadBillingConfig(env)
  const deps = await createDeps(config, silent)
  opts.prepare?.(deps)
  await createProducerStreams(deps, env.EVENTS_NAMESPACE)
  const app = buildApp(deps, config)
  app.addHook('onClose', async () => { await closeDeps(deps) })
  t.teardown(() => app.close())
  await app.ready()
  await waitFor(() => deps.redis.status === 'ready', { what: 'redis' })
  return { app, deps, config, env }
}

export const bearer = (userId: number, claims: Record<string, unknown> = {}) => ({ authorization: `Bearer ${signTestToken(userId, claims)}` })

export function usageEvent (userId: number, over: Partial<UsageRecorded> = {}): UsageRecorded {
  return {
    event_id: randomUUID(),
    occurred_at: new Date().toISOString(),
    user_id: userId,
    session_id: 1,
    message_id: 1,
    model: 'gpt-4o-mini',
    prompt_tokens: 10,
    completion_tokens: 5,
    usage_source: 'provider',
    ...over
  }
}

export function registeredEvent (userId: number, over: Partial<UserRegistered> = {}): UserRegistered {
  return { event_id: randomUUID(), occurred_at: new Date().toISOString(), user_id: userId, via: 'email', ...over }
}

/** Publishes like the producers' relays do (Nats-Msg-Id = event_id unless a raw payload is given). */
export function publisher (deps: BillingDeps, namespace: string) {
  const js = jetstream(deps.nc)
  const ns = namespaced(namespace)
  return {
    usage: (ev: unknown, msgID?: string) => js.publish(ns.subject(Subjects.usageRecorded), typeof ev === 'string' ? ev : JSON.stringify(ev), { msgID: msgID ?? (ev as { event_id?: string }).event_id }),
    registered: (ev: unknown) => js.publish(ns.subject(Subjects.userRegistered), JSON.stringify(ev), { msgID: (ev as { event_id?: string }).event_id })
  }
}

export async function ledgerOf (deps: BillingDeps, userId: number) {
  return await deps.db.selectFrom('transactions').selectAll().where('user_id', '=', userId).orderBy('id').execute()
}
