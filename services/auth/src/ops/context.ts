// What auth's ops commands run with: auth's schema through AUTH_DATABASE_URL (auth's own role where each service has one), else DATABASE_URL.
import type { Kysely } from 'kysely'
import pino, { type Logger } from 'pino'
import { Type } from 'typebox'
import { DatabaseEnv, createDb, loadConfig } from '@chat-platform/platform'
import { SCHEMA, type Database } from '../db/database.ts'

const AuthOpsEnvSchema = Type.Object({
  DATABASE_URL: DatabaseEnv.DATABASE_URL,
  /** Where auth's schema is, when not under DATABASE_URL (ops run with billing's environment). */
  AUTH_DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  /** admin:revoke ends the user's sessions: its revocations go to auth's outbox under auth's subject names. */
  EVENTS_NAMESPACE: Type.String({ default: '', pattern: '^[A-Za-z0-9_-]*$' }),
  /** auth's JWT_TTL: how long a revocation must be remembered. */
  JWT_TTL: Type.Integer({ default: 3600, minimum: 60 })
})

export interface AuthOpsContext {
  log: Logger
  out: (line: string) => void
  db: () => Kysely<Database>
  close: () => Promise<void>
  eventsNamespace: string
  jwtTtl: number
}

export function createAuthOpsContext (env: Record<string, string | undefined> = process.env, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): AuthOpsContext {
  // An empty AUTH_DATABASE_URL (compose passes unset variables as '') means "not set".
  const config = loadConfig(AuthOpsEnvSchema, { ...env, AUTH_DATABASE_URL: env.AUTH_DATABASE_URL || undefined })
  const log = pino({ level: env.LOG_LEVEL ?? 'warn' }, pino.destination(2))
  let db: Kysely<Database> | undefined
  return {
    log,
    out,
    db: () => (db ??= createDb<Database>({ url: config.AUTH_DATABASE_URL ?? config.DATABASE_URL, schema: SCHEMA, poolMax: 1, applicationName: 'ops' })),
    async close () { await db?.destroy() },
    eventsNamespace: config.EVENTS_NAMESPACE,
    jwtTtl: config.JWT_TTL
  }
}
