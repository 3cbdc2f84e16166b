// The auth service as a Fastify app: registers everything explicitly, in order.
import type { FastifyServerOptions } from 'fastify'
import { Counter } from 'prom-client'
import { createHttpApp, healthPlugin, openapiPlugin, jwtAuthPlugin, loadKeyPair, pingDb, pingNats, pingRedis } from '@chat-platform/platform'
import type { AuthConfig } from './config.ts'
import type { AuthDeps } from './deps.ts'
import { LoginThrottle } from './login-throttle.ts'
import { dummyHash, passwordHashing, WAITING_PER_SLOT } from './passwords.ts'
import { authRoutes } from './routes/auth.ts'
import { profileRoutes } from './routes/profile.ts'
import { internalRoutes } from './routes/internal.ts'
import { sessionRoutes } from './routes/sessions.ts'
import { accountRoutes } from './routes/account.ts'
import { emailRoutes } from './routes/email.ts'
import { adminRoutes } from './routes/admin.ts'

export interface BuildOptions { fastify?: FastifyServerOptions }

export function buildApp (deps: AuthDeps, config: AuthConfig, opts: BuildOptions = {}) {
  const app = createHttpApp({
    service: 'auth',
    logLevel: config.LOG_LEVEL,
    internalToken: config.INTERNAL_TOKEN,
    // The gateway is the hop in front of us: its X-Forwarded-For gives the client IP for login throttling.
    fastify: { trustProxy: (_address: string, hop: number) => hop < config.TRUST_PROXY_HOPS, ...opts.fastify }
  })
  const keys = loadKeyPair(config)
  const throttle = new LoginThrottle(deps.redis, {
    maxPerEmailIp: config.LOGIN_MAX_FAILURES_PER_EMAIL_IP,
    maxPerEmail: config.LOGIN_MAX_FAILURES_PER_EMAIL,
    maxPerIp: config.LOGIN_MAX_FAILURES_PER_IP,
    windowSeconds: config.LOGIN_FAILURE_WINDOW_SECONDS
  }, app.log)
  passwordHashing.maxWaiting = config.PASSWORD_HASH_QUEUE_MAX ?? passwordHashing.limit * WAITING_PER_SLOT

  app.register(openapiPlugin, { service: 'auth' })
  app.register(healthPlugin, {
    service: 'auth',
    checks: { postgres: () => pingDb(deps.db), nats: () => pingNats(deps.nc), redis: () => pingRedis(deps.redis), revocations: () => deps.revocations.ready() }
  })
  app.register(jwtAuthPlugin, { publicKey: keys.publicKey, privateKey: keys.privateKey, issuer: config.JWT_ISSUER, ttlSeconds: config.JWT_TTL, revocations: deps.revocations.list })
  // Every email login does exactly one argon2 verification, known email or not; this counts them.
  const verifications = new Counter({ name: 'auth_password_verifications_total', help: 'argon2 password verifications (email logins, dummy hash included)', registers: [] })
  // argon2 operations refused with 503 because the queue was full (passwordHashing.refused, read at scrape time).
  const refused = new Counter({
    name: 'auth_password_hash_refused_total',
    help: 'argon2 operations refused with 503 service_unavailable because PASSWORD_HASH_QUEUE_MAX were already waiting',
    registers: [],
    collect () { this.reset(); this.inc(passwordHashing.refused) }
  })
  app.after(() => { app.metrics.registerMetric(verifications); app.metrics.registerMetric(refused) })
  app.register(authRoutes, { db: deps.db, redis: deps.redis, config, throttle, verifications, mailer: deps.mailer })
  app.register(sessionRoutes, { db: deps.db, config })
  app.register(accountRoutes, { db: deps.db, config, throttle, verifications })
  app.register(emailRoutes, { db: deps.db, config, mailer: deps.mailer })
  app.register(profileRoutes, { db: deps.db, redis: deps.redis, config })
  app.register(adminRoutes, { db: deps.db })
  app.register(internalRoutes, { db: deps.db })
  // The dummy hash is ready before the first login, so an unknown email never pays for making it.
  app.addHook('onReady', async () => { await dummyHash() })
  return app
}
