// The chat service's connections, made once at boot and closed on shutdown.
import type { Kysely } from 'kysely'
import type { NatsConnection } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { namespaced } from '@chat-platform/contracts'
import { createDb, ensureDatabase, migrateToLatest, connectNats, ensureStreams, createRedis, OutboxRelay, RevocationFeed, type Redis } from '@chat-platform/platform'
import type { Logger } from 'pino'
import type { ChatConfig } from './config.ts'
import { SCHEMA, type Database } from './db/database.ts'
import { migrations } from './db/migrations/index.ts'
import { LlmClient } from './llm/client.ts'
import { ModelRegistry } from './llm/models.ts'
import { LlmRouter, type RoutedProvider } from './llm/router.ts'
import { createTokenizer, type Tokenizer } from '@chat-platform/tokenizer'
import { startSimulator, type Simulator } from '@chat-platform/llm-simulator'
import { createUserDeletedConsumer } from './events/user-deleted.consumer.ts'
import { createChatMetrics, type ChatMetrics } from './metrics.ts'

export interface ChatDeps {
  db: Kysely<Database>
  nc: NatsConnection
  redis: Redis
  relay: OutboxRelay
  /** Revoked access tokens from auth's AUTH_REVOCATIONS (read from its start at boot). */
  revocations: RevocationFeed
  /** Deletes a deleted user's sessions and messages (auth.user.deleted); started by server.ts. */
  userDeleted: ReturnType<typeof createUserDeletedConsumer>
  /** The model calls, failed over across each model's providers. */
  llm: LlmRouter
  /** The configured models (CHAT_MODELS, or CHAT_MODEL alone). */
  models: ModelRegistry
  tokenizer: Tokenizer
  /** Set when no OPENAI_API_KEY is configured: the offline LLM the service talks to instead. */
  simulator?: Simulator
  /** Chat's domain metrics (registered in /metrics by buildApp). */
  metrics: ChatMetrics
}

/**
 * The LLM: CHAT_PROVIDERS (each an OpenAI-compatible upstream for its models, failed over in order), else one
 * provider serving every model: OPENAI_BASE_URL/OPENAI_API_KEY, or the offline simulator when there is no key.
 * The SDK's own retries are off: each attempt is one request, and the router decides what follows.
 */
export async function createLlm (config: ChatConfig, log: Logger, metrics?: ChatMetrics): Promise<{ llm: LlmRouter, simulator?: Simulator }> {
  let simulator: Simulator | undefined
  const client = (name: string, baseURL: string | undefined, apiKey: string, simulated: boolean) => new LlmClient({
    baseURL,
    apiKey,
    model: config.CHAT_MODEL,
    timeoutMs: config.CHAT_LLM_TIMEOUT_MS,
    maxRetries: 0,
    maxOutputTokens: config.CHAT_MAX_OUTPUT_TOKENS,
    log,
    provider: name,
    simulated,
    metrics
  })
  let providers: RoutedProvider[]
  if (config.CHAT_PROVIDERS) {
    providers = config.CHAT_PROVIDERS.map((p) => ({ name: p.name, client: client(p.name, p.base_url, p.api_key, false), models: p.models, simulated: false }))
    log.info({ providers: config.CHAT_PROVIDERS.map((p) => ({ name: p.name, base_url: p.base_url, models: p.models })) }, 'LLM providers configured')
  } else {
    const models = config.CHAT_MODELS.map((m) => m.id)
    if (!config.OPENAI_API_KEY) {
      simulator = await startSimulator({ chunkDelayMs: config.CHAT_SIMULATOR_CHUNK_DELAY_MS }, { tokenizerModel: config.CHAT_MODEL })
      log.warn({ llm: 'simulated', url: simulator.url }, 'OPENAI_API_KEY is not set: replies come from the offline LLM simulator (simulated)')
      providers = [{ name: 'simulator', client: client('simulator', simulator.url, 'simulated', true), models, simulated: true }]
    } else {
      log.info({ llm: config.OPENAI_BASE_URL ?? 'https://api.openai.com/v1', models }, 'LLM provider configured')
      const name = providerName(config.OPENAI_BASE_URL)
      providers = [{ name, client: client(name, config.OPENAI_BASE_URL, config.OPENAI_API_KEY, false), models, simulated: false }]
    }
  }
  const llm = new LlmRouter(providers, {
    defaultModel: config.CHAT_MODEL,
    maxRetries: config.CHAT_LLM_MAX_RETRIES,
    retryAfterMaxMs: config.CHAT_LLM_RETRY_AFTER_MAX_MS,
    retryAfterCapMs: config.CHAT_LLM_RETRY_AFTER_CAP_MS,
    breakerFailures: config.CHAT_BREAKER_FAILURES,
    breakerCooldownMs: config.CHAT_BREAKER_COOLDOWN_MS,
    log,
    metrics
  })
  return { llm, simulator }
}

/** The metrics' provider label: the base URL's host (api.openai.com by default). */
const providerName = (baseUrl?: string) => baseUrl ? new URL(baseUrl).host : 'api.openai.com'

export async function createDeps (config: ChatConfig, log: Logger): Promise<ChatDeps> {
  await ensureDatabase(config.DATABASE_URL)
  const db = createDb<Database>({ url: config.DATABASE_URL, schema: SCHEMA, poolMax: config.DATABASE_POOL_MAX, applicationName: 'chat' })
  await migrateToLatest(db, SCHEMA, migrations, log)
  const nc = await connectNats({ url: config.NATS_URL, name: 'chat', log })
  const ns = namespaced(config.EVENTS_NAMESPACE)
  await ensureStreams(nc, [ns.streams.CHAT_USAGE], { maxAgeDays: config.STREAM_MAX_AGE_DAYS, replicas: config.STREAM_REPLICAS })
  const redis = createRedis({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, log, name: 'chat' })
  const relay = new OutboxRelay({ db, databaseUrl: config.DATABASE_URL, schema: SCHEMA, js: jetstream(nc), log, pollMs: config.OUTBOX_POLL_MS, retentionDays: config.OUTBOX_RETENTION_DAYS })
  const revocations = new RevocationFeed({ nc, stream: ns.streams.AUTH_REVOCATIONS.name, log })
  revocations.start()
  const tokenizer = await createTokenizer(config.CHAT_MODEL)
  const metrics = createChatMetrics({ db })
  const { llm, simulator } = await createLlm(config, log, metrics)
  const userDeleted = createUserDeletedConsumer({ nc, db, log, namespace: config.EVENTS_NAMESPACE })
  return { db, nc, redis, relay, revocations, userDeleted, llm, models: new ModelRegistry(config), tokenizer, simulator, metrics }
}

export async function closeDeps (deps: ChatDeps): Promise<void> {
  await deps.relay.stop()
  await deps.userDeleted.stop()
  await deps.revocations.stop()
  await deps.nc.drain().catch(() => {})
  deps.redis.disconnect()
  await deps.simulator?.close()
  await deps.db.destroy()
}
