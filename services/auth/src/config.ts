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
  /**
   * More apps of the same WeChat Open Platform account, JSON `[{appid, secret, kind}]` with kind `miniprogram`
   * (jscode2session), `official_account` or `website` (both /sns/oauth2/access_token). A user is the same account
   * in every app by unionid. WECHAT_APPID/WECHAT_SECRET, when set, is the default app (a mini-program).
   */
  WECHAT_APPS: Type.Optional(Type.String({ minLength: 2 })),
  WECHAT_API_BASE: Type.String({ default: 'https://api.weixin.qq.com', pattern: '^https?://' }),
  WECHAT_TIMEOUT_MS: Type.Integer({ default: 5_000, minimum: 100, maximum: 60_000 }),
  /** Login attempts per (email, client IP) within the window before 429: the tight limit on guessing one password. */
  LOGIN_MAX_FAILURES_PER_EMAIL_IP: Type.Integer({ default: 10, minimum: 1 }),
  /** Login attempts per email across all client IPs within the window before 429: a ceiling high enough that one stranger cannot lock the owner out. */
  LOGIN_MAX_FAILURES_PER_EMAIL: Type.Integer({ default: 100, minimum: 1 }),
  /** Login attempts per client IP (any emails) within the window before 429. */
  LOGIN_MAX_FAILURES_PER_IP: Type.Integer({ default: 100, minimum: 1 }),
  LOGIN_FAILURE_WINDOW_SECONDS: Type.Integer({ default: 900, minimum: 1 }),
  /** argon2 operations that may wait for a core before one more is refused with 503 (unset: 16 per core). */
  PASSWORD_HASH_QUEUE_MAX: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
  /** SMTP server for code mails: smtp://user:pass@host:587 (STARTTLS when offered) or smtps://user:pass@host:465. Unset: a development mailbox, or 503 for the mail routes in production. */
  MAIL_URL: Type.Optional(Type.String({ pattern: '^smtps?://' })),
  MAIL_FROM: Type.String({ default: 'chat-platform <no-reply@chat-platform.local>', minLength: 3 }),
  /** Connection, greeting and socket timeouts of one SMTP delivery. */
  MAIL_TIMEOUT_MS: Type.Integer({ default: 10_000, minimum: 100, maximum: 120_000 }),
  /**
   * When auth.user.registered (billing's signup bonus) is published for an email registration: at registration
   * (`register`), or when the address is verified (`verified_email`; set billing's SIGNUP_BONUS_ON the same).
   * WeChat registrations publish it at once either way (WeChat vouched for the identity; there is no address).
   */
  SIGNUP_BONUS_ON: Type.Union([Type.Literal('register'), Type.Literal('verified_email')], { default: 'register' }),
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
  const config = loadConfig(AuthConfigSchema, env)
  wechatApps(config)
  return config
}

export type WechatAppKind = 'miniprogram' | 'official_account' | 'website'
export interface WechatApp { appid: string, secret: string, kind: WechatAppKind }
const KINDS = new Set<string>(['miniprogram', 'official_account', 'website'])

/** Every configured WeChat app by appid, and the default one (WECHAT_APPID, else the first of WECHAT_APPS). */
export function wechatApps (config: Pick<AuthConfig, 'WECHAT_APPID' | 'WECHAT_SECRET' | 'WECHAT_APPS'>): { apps: Map<string, WechatApp>, defaultAppid?: string } {
  const apps = new Map<string, WechatApp>()
  if (config.WECHAT_APPID && config.WECHAT_SECRET) apps.set(config.WECHAT_APPID, { appid: config.WECHAT_APPID, secret: config.WECHAT_SECRET, kind: 'miniprogram' })
  if (config.WECHAT_APPS) {
    let list: unknown
    try { list = JSON.parse(config.WECHAT_APPS) } catch { throw new ConfigError(['WECHAT_APPS: not JSON (expected [{"appid","secret","kind"}])']) }
    if (!Array.isArray(list)) throw new ConfigError(['WECHAT_APPS: expected a JSON array of {appid, secret, kind}'])
    list.forEach((a: Record<string, unknown>, i) => {
      const ok = a && typeof a === 'object' && typeof a.appid === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(a.appid) &&
        typeof a.secret === 'string' && a.secret.length > 0 && typeof a.kind === 'string' && KINDS.has(a.kind)
      if (!ok) throw new ConfigError([`WECHAT_APPS[${i}]: needs appid (letters, digits), secret and kind (miniprogram, official_account or website)`])
      const app = { appid: a.appid as string, secret: a.secret as string, kind: a.kind as WechatAppKind }
      const known = apps.get(app.appid)
      if (known && (known.secret !== app.secret || known.kind !== app.kind)) throw new ConfigError([`WECHAT_APPS[${i}]: appid ${app.appid} is configured twice, differently`])
      apps.set(app.appid, app)
    })
  }
  return { apps, defaultAppid: config.WECHAT_APPID && config.WECHAT_SECRET ? config.WECHAT_APPID : apps.keys().next().value }
}

export const normalizeEmail = (email: string): string => email.trim().toLowerCase()
