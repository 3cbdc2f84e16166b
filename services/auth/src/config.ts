// Auth service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, OutboxEnv, ServiceUrlsEnv, InternalEnv, Port, loadConfig } from '@chat-platform/platform'

export const AuthConfigSchema = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  ...NatsEnv,
  ...RedisEnv,
  ...JwtVerifyEnv,
  ...OutboxEnv,
  ...ServiceUrlsEnv,
  ...InternalEnv,
  PORT: Port(3001),
  /** Ed25519 PKCS#8 PEM (`\n` escapes accepted); unset outside production: the dev pair in .keys/. */
  JWT_PRIVATE_KEY: Type.Optional(Type.String({ minLength: 1 })),
  /** Access-token lifetime in seconds. */
  JWT_TTL: Type.Integer({ default: 7 * 86400, minimum: 60, maximum: 90 * 86400 }),
  /** Comma-separated emails whose tokens carry role "admin". */
  ADMIN_EMAILS: Type.String({ default: '' }),
  WECHAT_APPID: Type.Optional(Type.String({ minLength: 1 })),
  WECHAT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  WECHAT_API_BASE: Type.String({ default: 'https://api.weixin.qq.com', pattern: '^https?://' }),
  WECHAT_TIMEOUT_MS: Type.Integer({ default: 5_000, minimum: 100, maximum: 60_000 }),
  /** Failed logins per email within the window before 429 (counted whether or not the email exists). */
  LOGIN_MAX_FAILURES_PER_EMAIL: Type.Integer({ default: 10, minimum: 1 }),
  /** Failed logins per client IP within the window before 429. */
  LOGIN_MAX_FAILURES_PER_IP: Type.Integer({ default: 100, minimum: 1 }),
  LOGIN_FAILURE_WINDOW_SECONDS: Type.Integer({ default: 900, minimum: 1 }),
  /** Proxy hops in front of auth whose X-Forwarded-For is trusted for the client IP (1: the gateway). */
  TRUST_PROXY_HOPS: Type.Integer({ default: 1, minimum: 0, maximum: 10 })
})
export type AuthConfig = Static<typeof AuthConfigSchema>

export const loadAuthConfig = (env: Record<string, string | undefined> = process.env): AuthConfig => loadConfig(AuthConfigSchema, env)

/** ADMIN_EMAILS as a set of normalized addresses. */
export const adminEmails = (config: AuthConfig): Set<string> =>
  new Set(config.ADMIN_EMAILS.split(',').map((e) => normalizeEmail(e)).filter(Boolean))

export const normalizeEmail = (email: string): string => email.trim().toLowerCase()
