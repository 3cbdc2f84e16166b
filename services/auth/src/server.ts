// Auth service entry: config → deps → buildApp → listen; SIGTERM drains requests, then the relay and pools.
import pino from 'pino'
import { listenWithGrace, loggerOptions, runMain } from '@chat-platform/platform'
import { loadAuthConfig } from './config.ts'
import { createDeps, closeDeps } from './deps.ts'
import { buildApp } from './app.ts'
import { startSweeper } from './sweeper.ts'

await runMain('auth', async () => {
  const config = loadAuthConfig()
  const log = pino(loggerOptions('auth', config.LOG_LEVEL))
  const deps = await createDeps(config, log)
  const app = buildApp(deps, config)
  const stopSweeper = startSweeper(deps.db, log)
  app.addHook('onClose', async () => { stopSweeper(); await closeDeps(deps) })
  await deps.relay.start()
  await listenWithGrace(app, { port: config.PORT, host: config.HOST, graceMs: config.SHUTDOWN_GRACE_MS })
})
