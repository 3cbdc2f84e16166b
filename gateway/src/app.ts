// The gateway as a Fastify app: the canonical-path check, health and metrics, JWT, CORS, /docs, then the public and authenticated trust zones.
import fastifyCors from '@fastify/cors'
import { createHttpApp, healthPlugin, jwtAuthPlugin, loadPublicKey, pingRedis } from '@chat-platform/platform'
import { parseCorsOrigins, parseTrustProxy, type GatewayConfig } from './config.ts'
import type { GatewayDeps } from './deps.ts'
import { gatewayMetricsPlugin } from './plugins/gateway-metrics.ts'
import { addCanonicalPathCheck, protectMetrics } from './plugins/edge-checks.ts'
import docsRoutes from './routes/docs.ts'
import publicRoutes, { callbackRoutes, passwordResetRoutes } from './routes/public.ts'
import authenticatedRoutes from './routes/authenticated.ts'
import { isProxied } from './routes/proxy.ts'

export function buildApp (deps: GatewayDeps, config: GatewayConfig) {
  const app = createHttpApp({ service: 'gateway', logLevel: config.LOG_LEVEL, fastify: { trustProxy: parseTrustProxy(config.TRUST_PROXY) as never } })
  const { upstreams, redis } = deps
  app.decorateRequest('proxiedTo', null)
  // First of all: a non-canonical path is refused before any zone sees it (DESIGN §6.1).
  addCanonicalPathCheck(app)
  protectMetrics(app, config.METRICS_TOKEN)
  app.register(healthPlugin, {
    service: 'gateway',
    timedElsewhere: isProxied,
    checks: {
      redis: () => pingRedis(redis).catch(() => { throw new Error('unreachable') }),
      auth: () => upstreams.auth.ping(1_500),
      chat: () => upstreams.chat.ping(1_500),
      billing: () => upstreams.billing.ping(1_500),
      revocations: () => deps.revocations.ready()
    }
  })
  app.register(gatewayMetricsPlugin)
  app.register(jwtAuthPlugin, { publicKey: loadPublicKey(config), issuer: config.JWT_ISSUER, revocations: deps.revocations.list })

  const origins = parseCorsOrigins(config.CORS_ORIGINS)
  if (origins.length) {
    // Registered before the zones, so a preflight is answered before any token check.
    app.register(fastifyCors, {
      origin: origins.includes('*') ? '*' : origins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'accept', 'idempotency-key', 'x-request-id'],
      exposedHeaders: ['x-request-id', 'retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'],
      maxAge: 600
    })
  }

  const timeouts = { defaultMs: config.UPSTREAM_TIMEOUT_MS, llmMs: config.UPSTREAM_CHAT_TIMEOUT_MS, connectRetries: config.UPSTREAM_CONNECT_RETRIES }
  const apiLimit = { max: config.RATE_LIMIT_MAX, windowMs: config.RATE_LIMIT_WINDOW_MS }
  app.register(docsRoutes, { upstreams, redis, cacheMs: config.DOCS_CACHE_MS, rateLimit: apiLimit })
  app.register(publicRoutes, { upstreams, redis, timeouts, rateLimit: { max: config.AUTH_RATE_LIMIT_MAX, windowMs: config.AUTH_RATE_LIMIT_WINDOW_MS } })
  app.register(passwordResetRoutes, { upstreams, redis, timeouts, rateLimit: { max: config.RESET_RATE_LIMIT_MAX, windowMs: config.RESET_RATE_LIMIT_WINDOW_MS } })
  app.register(callbackRoutes, { upstreams, redis, timeouts })
  app.register(authenticatedRoutes, { upstreams, redis, timeouts, rateLimit: { ...apiLimit, syncMs: config.RATE_LIMIT_SYNC_MS } })
  return app
}
