// Auth service configuration: the environment, validated at boot.
import { Type, type Static } from 'typebox'
import { CommonEnv, ConfigError, DatabaseEnv, NatsEnv, RedisEnv, JwtVerifyEnv, OutboxEnv, ServiceUrlsEnv, InternalEnv, Port, loadConfig } from '@chat-platform/platform'

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
  JWT_TTL: Type.Integer({ default: 3600, minimum: 60, maximum: 90 * 86400 }),
  /** Lifetime of a token carrying role "admin" (the shorter of this and JWT_TTL). */
  ADMIN_JWT_TTL: Type.Integer({ default: 3600, minimum: 60, maximum: 86400 }),
  WECHAT_APPID: Type.Optional(Type.String({ minLength: 1 })),
  WECHAT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  WECHAT_API_BASE: Type.String({ default: 'https://api.weixin.qq.com', pattern: '^https?://' }),
  WECHAT_TIMEOUT_MS: Type.Integer({ default: 5_000, minimum: 100, maximum: 60_000 }),
  /** Login attempts per (email, client IP) within the window before 429: the tight limit on guessing one password. */
  LOGIN_MAX_FAILURES_PER_EMAIL_IP: Type.Integer({ default: 10, minimum: 1 }),
  /** Login attempts per email across all client IPs within the window before 429: a ceiling high enough that one stranger cannot lock the owner out. */
  LOGIN_MAX_FAILURES_PER_EMAIL: Type.Integer({ default: 100, minimum: 1 }),
  /** Login attempts per client IP (any emails) within the window before 429. */
  LOGIN_MAX_FAILURES_PER_IP: Type.Integer({ default: 100, minimum: 1 }),
  LOGIN_FAILURE_WINDOW_SECONDS: Type.Integer({ default: 900, minimum: 1 }),
  /** SMTP server for code mails: smtp://user:pass@host:587 (STARTTLS when offered) or smtps://user:pass@host:465. Unset: a development mailbox, or 503 for the mail routes in production. */
  MAIL_URL: Type.Optional(Type.String({ pattern: '^smtps?://' })),
  MAIL_FROM: Type.String({ default: 'chat-platform <no-reply@chat-platform.local>', minLength: 3 }),
  /** Connection, greeting and socket timeouts of one SMTP delivery. */
  MAIL_TIMEOUT_MS: Type.Integer({ default: 10_000, minimum: 100, maximum: 120_000 }),
  /** Proxy hops in front of auth whose X-Forwarded-For is trusted for the client IP (1: the gateway). */
  TRUST_PROXY_HOPS: Type.Integer({ default: 1, minimum: 0, maximum: 10 })
})
export type AuthConfig = Static<typeof AuthConfigSchema>

export function loadAuthConfig (env: Record<string, string | undefined> = process.env): AuthConfig {
  // ADMIN_EMAILS made whoever registered a listed address first an admin. It is gone; a deployment still
  // setting it is told so rather than silently losing (or, worse, believing it still grants) the role.
  if (env.ADMIN_EMAILS?.trim()) {
    throw new ConfigError(['ADMIN_EMAILS: no longer supported; grant the role with `pnpm ops admin:grant <email>` and unset it'])
  }
  return loadConfig(AuthConfigSchema, env)
}

export const normalizeEmail = (email: string): string => email.trim().toLowerCase()
