// The billing service as a Fastify app: registers everything explicitly, in order.
import { createHttpApp, healthPlugin, openapiPlugin, jwtAuthPlugin, loadPublicKey, pingDb, pingNats, pingRedis } from '@chat-platform/platform'
import type { BillingConfig } from './config.ts'
import type { BillingDeps } from './deps.ts'

export function buildApp (deps: BillingDeps, config: BillingConfig) {
  const app = createHttpApp({ service: 'billing', logLevel: config.LOG_LEVEL })
  app.register(openapiPlugin, { service: 'billing' })
  app.register(healthPlugin, {
    service: 'billing',
    checks: { postgres: () => pingDb(deps.db), nats: () => pingNats(deps.nc), redis: () => pingRedis(deps.redis) }
  })
  app.register(jwtAuthPlugin, { publicKey: loadPublicKey(config), issuer: config.JWT_ISSUER })
  return app
}
