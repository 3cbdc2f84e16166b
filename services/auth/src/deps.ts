// The auth service's connections, made once at boot and closed on shutdown.
import type { Kysely } from 'kysely'
import type { NatsConnection } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { namespaced } from '@chat-platform/contracts'
import { createDb, ensureDatabase, migrateToLatest, connectNats, ensureStreams, createRedis, OutboxRelay, RevocationFeed, IAT_SKEW_SECONDS, type Redis } from '@chat-platform/platform'
import type { Logger } from 'pino'
import type { AuthConfig } from './config.ts'
import { SCHEMA, type Database } from './db/database.ts'
import { migrations } from './db/migrations/index.ts'
import { createMailer, type Mailer } from './mail.ts'

export interface AuthDeps {
  db: Kysely<Database>
  nc: NatsConnection
  redis: Redis
  relay: OutboxRelay
  /** Revoked access tokens, read back from AUTH_REVOCATIONS like every other verifier does. */
  revocations: RevocationFeed
  mailer: Mailer
}

/** AUTH_REVOCATIONS keeps a record as long as a token it revokes can live (JWT_TTL), plus an hour of margin. */
export const revocationsMaxAgeSeconds = (config: Pick<AuthConfig, 'JWT_TTL'>) => config.JWT_TTL + IAT_SKEW_SECONDS + 3600

export async function createDeps (config: AuthConfig, log: Logger): Promise<AuthDeps> {
  await ensureDatabase(config.DATABASE_URL)
  const db = createDb<Database>({ url: config.DATABASE_URL, schema: SCHEMA, poolMax: config.DATABASE_POOL_MAX, applicationName: 'auth' })
  await migrateToLatest(db, SCHEMA, migrations, log)
  const nc = await connectNats({ url: config.NATS_URL, name: 'auth', log })
  const ns = namespaced(config.EVENTS_NAMESPACE)
  // AUTH_EVENTS first: before AUTH_REVOCATIONS existed it also held auth.token.>, and streams may not overlap.
  await ensureStreams(nc, [ns.streams.AUTH_EVENTS, { ...ns.streams.AUTH_REVOCATIONS, maxAgeSeconds: revocationsMaxAgeSeconds(config) }], { maxAgeDays: config.STREAM_MAX_AGE_DAYS, replicas: config.STREAM_REPLICAS })
  const redis = createRedis({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, log, name: 'auth' })
  const relay = new OutboxRelay({ db, databaseUrl: config.DATABASE_URL, schema: SCHEMA, js: jetstream(nc), log, pollMs: config.OUTBOX_POLL_MS, retentionDays: config.OUTBOX_RETENTION_DAYS })
  const revocations = new RevocationFeed({ nc, stream: ns.streams.AUTH_REVOCATIONS.name, log })
  revocations.start()
  return { db, nc, redis, relay, revocations, mailer: createMailer(config, log) }
}

export async function closeDeps (deps: AuthDeps): Promise<void> {
  await deps.relay.stop()
  await deps.revocations.stop()
  deps.mailer.close()
  await deps.nc.drain().catch(() => {})
  deps.redis.disconnect()
  await deps.db.destroy()
}
