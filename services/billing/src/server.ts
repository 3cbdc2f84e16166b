// Billing service entry: config → deps → buildApp → listen; SIGTERM drains requests, then the consumers and pools.
import pino from 'pino'
import { listenWithGrace, loggerOptions, runMain } from '@chat-platform/platform'
import { loadBillingConfig } from './config.ts'
import { createDeps, closeDeps } from './deps.ts'
import { buildApp } from './app.ts'

await runMain('billing', async () => {
  const config = loadBillingConfig()
  const log = pino(loggerOptions('billing', config.LOG_LEVEL))
  const deps = await createDeps(config, log)
  const app = buildApp(deps, config)
  app.addHook('onClose', async () => { await closeDeps(deps) })
  await deps.start()
  log.info({ recharge_policy: config.RECHARGE_POLICY, signup_bonus: config.SIGNUP_BONUS }, 'billing rules')
  await listenWithGrace(app, { port: config.PORT, host: config.HOST, graceMs: config.SHUTDOWN_GRACE_MS })
})
