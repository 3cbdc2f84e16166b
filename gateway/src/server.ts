// Gateway entry: config → deps → buildApp → listen; SIGTERM drains in-flight requests (streams included), then closes the pools.
import pino from 'pino'
import { listenWithGrace, loggerOptions, runMain } from '@chat-platform/platform'
import { loadGatewayConfig } from './config.ts'
import { createDeps, closeDeps } from './deps.ts'
import { buildApp } from './app.ts'

await runMain('gateway', async () => {
  const config = loadGatewayConfig()
  const log = pino(loggerOptions('gateway', config.LOG_LEVEL))
  const deps = await createDeps(config, log)
  const app = buildApp(deps, config)
  app.addHook('onClose', async () => { await closeDeps(deps) })
  await listenWithGrace(app, { port: config.PORT, host: config.HOST, graceMs: config.SHUTDOWN_GRACE_MS })
})
