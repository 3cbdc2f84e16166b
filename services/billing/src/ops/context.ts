// What billing's ops commands run with: the billing configuration (the service's env vars) and connections, opened on demand.
import type { Kysely } from 'kysely'
import type { NatsConnection } from '@nats-io/transport-node'
import { connectNats, createDb, createRedis, setInternalToken, type Redis } from '@chat-platform/platform'
import pino, { type Logger } from 'pino'
import { loadBillingConfig, type BillingConfig } from '../config.ts'
import { SCHEMA, type Database } from '../db/database.ts'

export interface BillingOpsContext {
  config: BillingConfig
  log: Logger
  out: (line: string) => void
  db: () => Kysely<Database>
  nats: () => Promise<NatsConnection>
  redis: () => Redis
  close: () => Promise<void>
}

export function createBillingOpsContext (env: Record<string, string | undefined> = process.env, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): BillingOpsContext {
  const config = loadBillingConfig(env)
  // Calls to chat's and billing's /internal/ routes carry INTERNAL_TOKEN.
  setInternalToken(config.INTERNAL_TOKEN)
  const log = pino({ level: env.LOG_LEVEL ?? 'warn' }, pino.destination(2))
  let db: Kysely<Database> | undefined
  let nc: Promise<NatsConnection> | undefined
  let redis: Redis | undefined
  return {
    config,
    log,
    out,
    db: () => (db ??= createDb<Database>({ url: config.DATABASE_URL, schema: SCHEMA, poolMax: 4, applicationName: 'ops' })),
    nats: () => (nc ??= connectNats({ url: config.NATS_URL, name: 'ops', log })),
    redis: () => (redis ??= createRedis({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, log, name: 'ops' })),
    async close () {
      if (nc) await (await nc).drain().catch(() => {})
      redis?.disconnect()
      await db?.destroy()
    }
  }
}
