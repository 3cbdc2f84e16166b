// Gateway configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, RedisEnv, NatsEnv, JwtVerifyEnv, ServiceUrlsEnv, Port, loadConfig, ConfigError } from '@chat-platform/platform'

const Ms = (def: number, minimum = 1) => Type.Integer({ default: def, minimum })

export const GatewayConfigSchema = Type.Object({
  ...CommonEnv,
  ...RedisEnv,
  /** NATS: the gateway reads auth's AUTH_REVOCATIONS stream (revoked tokens), nothing else. */
  ...NatsEnv,
  ...JwtVerifyEnv,
  ...ServiceUrlsEnv,
  PORT: Port(8080),
  /** When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`; unset, /metrics is open. */
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  /** Which X-Forwarded-For hops to believe: false (default), true, a hop count, or comma-separated IPs/CIDRs. */
  TRUST_PROXY: Type.String({ default: 'false', minLength: 1 }),
  /** Comma-separated allowed origins ('*' for any); empty disables CORS. */
  CORS_ORIGINS: Type.String({ default: '' }),
  RATE_LIMIT_MAX: Type.Integer({ default: 300, minimum: 1 }),
  RATE_LIMIT_WINDOW_MS: Ms(60_000, 1000),
  /** Authenticated routes: below half its limit a key is counted locally and synced to Redis this often; 0 counts every request in Redis. */
  RATE_LIMIT_SYNC_MS: Ms(100, 0),
  /** Stricter limit, per client IP, on register and the two login routes. */
  AUTH_RATE_LIMIT_MAX: Type.Integer({ default: 20, minimum: 1 }),
  AUTH_RATE_LIMIT_WINDOW_MS: Ms(60_000, 1000),
  /** Per client IP on POST /api/auth/password-reset and /confirm (each request may send a mail; auth also caps mails per address). */
  RESET_RATE_LIMIT_MAX: Type.Integer({ default: 5, minimum: 1 }),
  RESET_RATE_LIMIT_WINDOW_MS: Ms(600_000, 1000),
  UPSTREAM_CONNECT_TIMEOUT_MS: Ms(3_000),
  /** Time to the response headers, and the longest silence inside a response body, for ordinary routes. */
  UPSTREAM_TIMEOUT_MS: Ms(30_000),
  /** The same for POST /api/sessions/{id}/messages: a JSON answer waits for the whole LLM reply (chat's own LLM timeout is shorter). */
  UPSTREAM_CHAT_TIMEOUT_MS: Ms(300_000),
  /** Connections per upstream address (pipelining is 1). */
  UPSTREAM_CONNECTIONS: Type.Integer({ default: 128, minimum: 1 }),
  /** Idempotent requests whose connection could not be made are retried on the next address this many times. */
  UPSTREAM_CONNECT_RETRIES: Type.Integer({ default: 2, minimum: 0, maximum: 10 }),
  /** Resolved upstream addresses are reused this long before DNS is asked again. */
  UPSTREAM_DNS_TTL_MS: Ms(10_000),
  /** An address that refused a connection is skipped this long (unless every address is down). */
  UPSTREAM_DOWN_COOLDOWN_MS: Ms(5_000, 0),
  /** The merged OpenAPI document is rebuilt from the services at most this often. */
  DOCS_CACHE_MS: Ms(30_000, 0)
})
export type GatewayConfig = Static<typeof GatewayConfigSchema>

export type TrustProxy = boolean | number | string

/** TRUST_PROXY as Fastify's `trustProxy` option. */
export function parseTrustProxy (value: string): TrustProxy {
  const v = value.trim().toLowerCase()
  if (v === 'false' || v === '0') return false
  if (v === 'true') return true
  if (/^\d+$/.test(v)) return Number(v)
  if (/^[0-9a-f:.,/\s]+$/.test(v)) return v.split(',').map((s) => s.trim()).filter(Boolean).join(',')
  throw new ConfigError([`TRUST_PROXY: must be false, true, a hop count or comma-separated IPs/CIDRs (got ${JSON.stringify(value)})`])
}

/** CORS_ORIGINS as a list; empty means CORS is off. */
export function parseCorsOrigins (value: string): string[] {
  const origins = value.split(',').map((s) => s.trim()).filter(Boolean)
  for (const o of origins) {
    if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o)) throw new ConfigError([`CORS_ORIGINS: ${JSON.stringify(o)} is not an origin like https://app.example.com (or *)`])
  }
  return origins
}

export function loadGatewayConfig (env: Record<string, string | undefined> = process.env): GatewayConfig {
  const config = loadConfig(GatewayConfigSchema, env)
  parseTrustProxy(config.TRUST_PROXY)
  parseCorsOrigins(config.CORS_ORIGINS)
  return config
}
