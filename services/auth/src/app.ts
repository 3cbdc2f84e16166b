// The auth service as a Fastify app: registers everything explicitly, in order.
import { createHttpApp, healthPlugin, openapiPlugin, jwtAuthPlugin, loadPublicKey, pingDb, pingNats, pingRedis } from '@chat-platform/platform'
import type { AuthConfig } from './config.ts'
import type { AuthDeps } from './deps.ts'

export function buildApp (deps: AuthDeps, config: AuthConfig) {
  const app = createHttpApp({ service: 'auth', logLevel: config.LOG_LEVEL })
  app.register(openapiPlugin, { service: 'auth' })
  app.register(healthPlugin, {
    service: 'auth',
    checks: { postgres: () => pingDb(deps.db), nats: () => pingNats(deps.nc), redis: () => pingRedis(deps.redis) }
  })
  app.register(jwtAuthPlugin, { publicKey: loadPublicKey(config), issuer: config.JWT_ISSUER })
  return app
}
