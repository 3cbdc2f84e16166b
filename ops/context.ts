// What an ops command runs with: the billing configuration (same env vars) and connections, opened on demand.
import type { Kysely } from 'kysely'
import type { NatsConnection } from '@nats-io/transport-node'
import { connectNats, createDb, createRedis, setInternalToken, type Redis } from '@chat-platform/platform'
import { loadBillingConfig, type BillingConfig } from '@chat-platform/billing/config.ts'
import { SCHEMA, type Database } from '@chat-platform/billing/db/database.ts'
import { SCHEMA as AUTH_SCHEMA, type Database as AuthDatabase } from '@chat-platform/auth/db/database.ts'
import pino, { type Logger } from 'pino'

export interface OpsContext {
  config: BillingConfig
  log: Logger
  out: (line: string) => void
  db: () => Kysely<Database>
  /** auth's schema (admin:grant / admin:revoke), through AUTH_DATABASE_URL (auth's own role where each service has one), else DATABASE_URL. */
  authDb: () => Kysely<AuthDatabase>
  nats: () => Promise<NatsConnection>
  redis: () => Redis
  close: () => Promise<void>
}

export function createOpsContext (env: Record<string, string | undefined> = process.env, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): OpsContext {
  const config = loadBillingConfig(env)
  // Calls to chat's and billing's /internal/ routes carry INTERNAL_TOKEN.
  setInternalToken(config.INTERNAL_TOKEN)
  const log = pino({ level: env.LOG_LEVEL ?? 'warn' }, pino.destination(2))
  let db: Kysely<Database> | undefined
  let authDb: Kysely<AuthDatabase> | undefined
  let nc: Promise<NatsConnection> | undefined
  let redis: Redis | undefined
  return {
    config,
    log,
    out,
    db: () => (db ??= createDb<Database>({ url: config.DATABASE_URL, schema: SCHEMA, poolMax: 4, applicationName: 'ops' })),
    authDb: () => (authDb ??= createDb<AuthDatabase>({ url: env.AUTH_DATABASE_URL || config.DATABASE_URL, schema: AUTH_SCHEMA, poolMax: 1, applicationName: 'ops' })),
    nats: () => (nc ??= connectNats({ url: config.NATS_URL, name: 'ops', log })),
    redis: () => (redis ??= createRedis({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, log, name: 'ops' })),
    async close () {
      if (nc) await (await nc).drain().catch(() => {})
      redis?.disconnect()
      await db?.destroy()
      await authDb?.destroy()
    }
  }
}
