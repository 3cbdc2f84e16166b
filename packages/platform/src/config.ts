// Environment configuration: TypeBox schemas for env vars, validated at boot with errors naming the variable.
import { Type, type Static, type TObject, type TProperties } from 'typebox'
import Value from 'typebox/value'

export class ConfigError extends Error {
  readonly problems: string[]
  constructor (problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.problems = problems
    this.name = 'ConfigError'
  }
}

/** Reads and validates `env` against `schema`; unknown variables are ignored, defaults applied. */
export function loadConfig<T extends TProperties> (schema: TObject<T>, env: Record<string, string | undefined> = process.env): Static<TObject<T>> {
  const raw: Record<string, unknown> = {}
  for (const key of Object.keys(schema.properties)) {
    const v = env[key]
    if (v !== undefined && v !== '') raw[key] = v
  }
  const value = Value.Convert(schema, Value.Default(schema, raw))
  if (!Value.Check(schema, value)) {
    const problems = Value.Errors(schema, value).map((e) => {
      const name = e.instancePath.replace(/^\//, '') || (e.params as { requiredProperties?: string[] }).requiredProperties?.join(', ') || '(root)'
      const shown = typeof (value as Record<string, unknown>)[name] === 'string' && /KEY|SECRET|PASSWORD|_TOKEN$/.test(name) ? '(hidden)' : JSON.stringify((value as Record<string, unknown>)[name])
      return `${name}: ${e.message} (got ${shown})`
    })
    throw new ConfigError(problems)
  }
  // Secrets a development machine may leave unset (open) but production must not.
  const loaded = value as Record<string, unknown>
  if (loaded.NODE_ENV === 'production') {
    const missing = Object.entries(schema.properties).filter(([k, s]) => (s as { requiredInProduction?: boolean }).requiredInProduction && loaded[k] === undefined)
    if (missing.length > 0) throw new ConfigError(missing.map(([k, s]) => `${k}: required when NODE_ENV=production (${(s as { description?: string }).description ?? 'unset means open'})`))
  }
  return value as Static<TObject<T>>
}

const Url = (def: string, protocols: string) => Type.String({ default: def, pattern: `^(${protocols})://` })

/** Variables every process reads. */
export const CommonEnv = {
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development' }),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1 }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
  SHUTDOWN_GRACE_MS: Type.Integer({ default: 10_000, minimum: 0 })
}
export const Port = (def: number) => Type.Integer({ default: def, minimum: 0, maximum: 65535 })

export const DatabaseEnv = {
  DATABASE_URL: Url('postgres://postgres@127.0.0.1:5432/chat_platform', 'postgres|postgresql'),
  DATABASE_POOL_MAX: Type.Integer({ default: 10, minimum: 1, maximum: 200 })
}
export const NatsEnv = {
  NATS_URL: Type.String({ default: 'nats://127.0.0.1:4222', minLength: 1 }),
  /** Prefix for stream and subject names; empty in production, unique per test run. */
  EVENTS_NAMESPACE: Type.String({ default: '', pattern: '^[A-Za-z0-9_-]*$' }),
  STREAM_MAX_AGE_DAYS: Type.Integer({ default: 90, minimum: 1 }),
  STREAM_REPLICAS: Type.Integer({ default: 1, minimum: 1, maximum: 5 })
}
export const RedisEnv = {
  REDIS_URL: Url('redis://127.0.0.1:6379', 'redis|rediss'),
  REDIS_PREFIX: Type.String({ default: '' })
}
export const JwtVerifyEnv = {
  JWT_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1 })),
  JWT_ISSUER: Type.String({ default: 'chat-platform', minLength: 1 })
}
/** The shared secret of internal calls (`/internal/*`): every service that serves or calls them, and ops. */
export const InternalEnv = {
  INTERNAL_TOKEN: Type.Optional(Type.String({
    minLength: 16,
    requiredInProduction: true,
    description: 'the shared secret /internal/* routes require; unset outside production means they are open'
  }))
}
export const OutboxEnv = {
  OUTBOX_POLL_MS: Type.Integer({ default: 1000, minimum: 10 }),
  OUTBOX_RETENTION_DAYS: Type.Integer({ default: 90, minimum: 1 })
}
export const ServiceUrlsEnv = {
  AUTH_URL: Url('http://127.0.0.1:3001', 'http|https'),
  CHAT_URL: Url('http://127.0.0.1:3002', 'http|https'),
  BILLING_URL: Url('http://127.0.0.1:3003', 'http|https')
}
