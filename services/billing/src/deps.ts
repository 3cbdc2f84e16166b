// The billing service's connections and consumers, made once at boot and closed on shutdown.
import type { Kysely } from 'kysely'
import type { NatsConnection } from '@nats-io/transport-node'
import { namespaced } from '@chat-platform/contracts'
import { createDb, ensureDatabase, migrateToLatest, connectNats, createRedis, RevocationFeed, type BatchConsumer, type Redis } from '@chat-platform/platform'
import type { Logger } from 'pino'
import { knownUsers, type UserCheck } from './known-users.ts'
import type { BillingConfig } from './config.ts'
import { SCHEMA, type Database } from './db/database.ts'
import { migrations } from './db/migrations/index.ts'
import { deleteExpiredIdempotencyKeys } from './db/repositories/idempotency-keys.ts'
import type { LedgerRules } from './ledger.ts'
import { createUsageConsumer } from './events/usage-recorded.consumer.ts'
import { createSignupConsumer } from './events/user-registered.consumer.ts'
import { newPaymentStats, type Payments } from './payments/orders.ts'
import { createPaymentProvider, authOpenids } from './payments/provider.ts'
import { createOrderPoller, type OrderPoller } from './payments/poller.ts'

export interface BillingDeps {
  db: Kysely<Database>
  nc: NatsConnection
  redis: Redis
  log: Logger
  rules: LedgerRules
  /** Whether a user id belongs to a real user (checked before an account is opened by a request). */
  knownUser: UserCheck
  consumers: { usage: BatchConsumer<any>, signup: BatchConsumer<any> }
  /** Revoked access tokens from auth's AUTH_REVOCATIONS (read from its start at boot). */
  revocations: RevocationFeed
  /** Paid top-ups: the WeChat Pay provider (or the simulator, or none), the packages, the counts for /metrics. */
  payments: Payments
  /** Asks WeChat Pay about pending orders whose callback never came and closes expired ones. */
  orderPoller: OrderPoller
  /** Starts the consumers, the order poller and the idempotency-key cleanup. */
  start: () => Promise<void>
  /** Stops them: the consumer loops finish the batches in flight and hand back what they buffered. */
  stop: () => Promise<void>
}

export async function createDeps (config: BillingConfig, log: Logger): Promise<BillingDeps> {
  await ensureDatabase(config.DATABASE_URL)
  const db = createDb<Database>({ url: config.DATABASE_URL, schema: SCHEMA, poolMax: config.DATABASE_POOL_MAX, applicationName: 'billing' })
  await migrateToLatest(db, SCHEMA, migrations, log)
  const nc = await connectNats({ url: config.NATS_URL, name: 'billing', log })
  const ns = namespaced(config.EVENTS_NAMESPACE)
  const redis = createRedis({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, log, name: 'billing' })
  const rules: LedgerRules = { signupBonus: config.SIGNUP_BONUS, prices: config.MODEL_PRICES, bonusOn: config.SIGNUP_BONUS_ON }
  // Billing creates only its durable consumers: CHAT_USAGE is chat's stream, AUTH_EVENTS auth's (a consumer waits
  // for a stream its producer has not created yet).
  const common = {
    nc,
    log,
    books: { db, redis, log },
    namespace: config.EVENTS_NAMESPACE,
    rules,
    ackWaitMs: config.BILLING_ACK_WAIT_MS,
    batchSize: config.BILLING_BATCH_SIZE,
    concurrency: config.BILLING_BATCH_CONCURRENCY,
    lingerMs: config.BILLING_BATCH_LINGER_MS,
    retryDelayMs: config.BILLING_RETRY_DELAY_MS
  }
  const known = knownUsers(db, { authUrl: config.AUTH_URL, enabled: config.BILLING_CHECK_USERS })
  const consumers = { usage: createUsageConsumer({ ...common, knownUsers: known }), signup: createSignupConsumer(common) }
  const revocations = new RevocationFeed({ nc, stream: ns.streams.AUTH_REVOCATIONS.name, log })
  revocations.start()
  const payments: Payments = {
    config: config.payments,
    provider: await createPaymentProvider(config.payments),
    openidOf: authOpenids(config.AUTH_URL),
    stats: newPaymentStats(),
    books: { db, redis, log },
    rules
  }
  const orderPoller = createOrderPoller(payments)
  let cleanup: NodeJS.Timeout | undefined
  const sweep = () => deleteExpiredIdempotencyKeys(db, config.IDEMPOTENCY_TTL_HOURS)
    .catch((err) => log.warn({ err: (err as Error).message }, 'idempotency key cleanup failed'))
  return {
    db,
    nc,
    redis,
    log,
    rules,
    knownUser: known.has,
    consumers,
    revocations,
    payments,
    orderPoller,
    async start () {
      await consumers.signup.start()
      await consumers.usage.start()
      orderPoller.start()
      sweep().catch(() => {})
      cleanup = setInterval(sweep, 3600_000)
      cleanup.unref()
    },
    async stop () {
      clearInterval(cleanup)
      await orderPoller.stop()
      await Promise.all([consumers.usage.stop(), consumers.signup.stop()])
    }
  }
}

/** Stops the consumer loops first (finishing the batches in flight), then drains NATS and closes the pools. */
export async function closeDeps (deps: BillingDeps): Promise<void> {
  await deps.stop()
  await deps.revocations.stop()
  await deps.nc.drain().catch(() => {})
  deps.redis.disconnect()
  await deps.db.destroy()
}
