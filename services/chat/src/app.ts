// The chat service as a Fastify app: registers everything explicitly, in order.
import { createHttpApp, healthPlugin, openapiPlugin, jwtAuthPlugin, loadPublicKey, pingDb, pingNats, pingRedis } from '@chat-platform/platform'
import type { ChatConfig } from './config.ts'
import type { ChatDeps } from './deps.ts'
import { sessionRoutes } from './routes/sessions.ts'
import { messageRoutes } from './routes/messages.ts'
import { internalUsageRoutes } from './routes/internal-usage.ts'
import { modelRoutes } from './routes/models.ts'

export function buildApp (deps: ChatDeps, config: ChatConfig) {
  const app = createHttpApp({ service: 'chat', logLevel: config.LOG_LEVEL, internalToken: config.INTERNAL_TOKEN })
  app.register(openapiPlugin, { service: 'chat' })
  app.register(healthPlugin, {
    service: 'chat',
    checks: { postgres: () => pingDb(deps.db), nats: () => pingNats(deps.nc), redis: () => pingRedis(deps.redis), revocations: () => deps.revocations.ready() }
  })
  app.after(() => { for (const metric of deps.metrics.all) app.metrics.registerMetric(metric) })
  app.register(jwtAuthPlugin, { publicKey: loadPublicKey(config), issuer: config.JWT_ISSUER, revocations: deps.revocations.list })
  app.register(sessionRoutes, { deps })
  app.register(modelRoutes, { deps })
  app.register(messageRoutes, { deps, config })
  app.register(internalUsageRoutes, { deps, config })
  return app
}
