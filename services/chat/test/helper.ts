// Test helpers: a chat app on real Postgres/NATS/Redis (isolated per test) talking to a fake OpenAI server.
import pino from 'pino'
import { jetstream, jetstreamManager, DeliverPolicy } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { Redis } from 'ioredis'
import { balanceCacheKey, encodeBalanceCache, namespaced, type UsageRecorded } from '@chat-platform/contracts'
import { createTestDatabase, testNamespace, testRedisPrefix, testKeys, signTestToken, TEST_NATS_URL, TEST_REDIS_URL } from '@chat-platform/platform/testing'
import { loadChatConfig, type ChatConfig } from '../src/config.ts'
import { createDeps, closeDeps, type ChatDeps } from '../src/deps.ts'
import { buildApp } from '../src/app.ts'
import { migrations } from '../src/db/migrations/index.ts'
import { startSimulator, type Simulator, type SimulatorKnobs } from '@chat-platform/llm-simulator'

export interface InjectResponse { statusCode: number, headers: Record<string, string | string[] | number | undefined>, body: string, json: <T = any>() => T }

interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestApp {
  app: ReturnType<typeof buildApp>
  deps: ChatDeps
  config: ChatConfig
  /** The fake OpenAI server (absent when the test asked for the built-in simulator). */
  llm: Simulator
  token: (userId: number) => string
  auth: (userId: number) => { authorization: string }
  /** Billing's copy as billing writes it; `chatApplied`: the sum of chat's prices billing has applied (default 0). */
  seedBalance: (userId: number, balance: number, chatApplied?: number) => Promise<void>
  createSession: (userId: number, title?: string) => Promise<{ id: number }>
  send: (userId: number, sessionId: number, content: string, headers?: Record<string, string>) => Promise<InjectResponse>
  /** Every usage event in the namespaced CHAT_USAGE stream. */
  usageEvents: () => Promise<UsageRecorded[]>
  streamMessageCount: () => Promise<number>
}

export async function buildTestApp (t: Teardown, env: Record<string, string> = {}, opts: { knobs?: Partial<SimulatorKnobs>, builtInSimulator?: boolean } = {}): Promise<TestApp> {
  const llm = await startSimulator(opts.knobs)
  t.teardown(() => llm.close())
  const natsUrl = env.NATS_URL ?? TEST_NATS_URL
  const config = loadChatConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATABASE_URL: await createTestDatabase(t, { chat: migrations }),
    DATABASE_POOL_MAX: '5',
    NATS_URL: natsUrl,
    EVENTS_NAMESPACE: testNamespace(t, natsUrl),
    REDIS_URL: TEST_REDIS_URL,
    REDIS_PREFIX: testRedisPrefix(t),
    JWT_PUBLIC_KEY: testKeys.publicKey,
    OUTBOX_POLL_MS: '50',
    // No billing runs in these tests: balances are seeded in Redis, a missing one makes billing "down".
    BILLING_URL: 'http://127.0.0.1:9',
    ...(opts.builtInSimulator ? { CHAT_SIMULATOR_CHUNK_DELAY_MS: '0' } : { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: llm.url }),
    CHAT_LLM_MAX_RETRIES: '0',
    // Titles are a call of their own to the fake: the tests of titles turn them on.
    CHAT_AUTO_TITLE: 'false',
    ...env
  })
  const log = pino({ level: config.LOG_LEVEL })
  const deps = await createDeps(config, log)
  const app = buildApp(deps, config)
  await deps.relay.start()
  t.teardown(async () => {
    await app.close()
    await closeDeps(deps)
  })
  await app.ready()

  const redis = new Redis(config.REDIS_URL, { keyPrefix: config.REDIS_PREFIX, lazyConnect: true })
  t.teardown(() => redis.disconnect())
  const names = namespaced(config.EVENTS_NAMESPACE)
  const token = (userId: number) => signTestToken(userId)
  const auth = (userId: number) => ({ authorization: `Bearer ${token(userId)}` })

  const streamMessageCount = async () => {
    const jsm = await jetstreamManager(deps.nc)
    return (await jsm.streams.info(names.streams.CHAT_USAGE.name)).state.messages
  }

  return {
    app,
    deps,
    config,
    llm,
    token,
    auth,
    async seedBalance (userId, balance, chatApplied = 0) {
      if (redis.status === 'wait') await redis.connect()
      await redis.set(balanceCacheKey(userId), encodeBalanceCache({ balance, chat_applied: chatApplied }), 'EX', 3600)
    },
    async createSession (userId, title) {
      const res = await app.inject({ method: 'POST', url: '/api/sessions', headers: auth(userId), payload: title === undefined ? {} : { title } })
      if (res.statusCode !== 200) throw new Error(`create session: ${res.statusCode} ${res.body}`)
      return res.json()
    },
    async send (userId, sessionId, content, headers = {}) {
      return await app.inject({ method: 'POST', url: `/api/sessions/${sessionId}/messages`, headers: { ...auth(userId), ...headers }, payload: { content } })
    },
    streamMessageCount,
    async usageEvents () {
      const total = await streamMessageCount()
      if (total === 0) return []
      // A fresh connection: the app's own may be draining at teardown, or pointed at a stopped server.
      const nc = await connect({ servers: natsUrl })
      try {
        const c = await jetstream(nc).consumers.get(names.streams.CHAT_USAGE.name, { deliver_policy: DeliverPolicy.All })
        const out: UsageRecorded[] = []
        const it = await c.consume()
        for await (const m of it) {
          out.push(m.json<UsageRecorded>())
          if (out.length >= total) break
        }
        return out
      } finally { await nc.close() }
    }
  }
}

/** The value of one sample in /metrics (summed over the lines whose labels include `labels`); NaN when absent. */
export async function sample (s: TestApp, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await s.app.inject({ url: '/metrics' })).body
  let total = 0
  let seen = false
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue
    seen = true
    total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return seen ? total : Number.NaN
}

/** Parses an SSE body into its events, in order. */
export function parseSse (body: string): { event: string, data: any }[] {
  return body.split('\n\n').filter((block) => block.trim() && !block.startsWith(':')).map((block) => {
    const lines = block.split('\n')
    const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message'
    const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')
    return { event, data: JSON.parse(data) }
  })
}
