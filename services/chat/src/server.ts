// Chat service entry: config → deps → buildApp → listen; SIGTERM drains requests, then the relay and pools.
import pino from 'pino'
import { listenWithGrace, loggerOptions, runMain } from '@chat-platform/platform'
import { loadChatConfig } from './config.ts'
import { createDeps, closeDeps } from './deps.ts'
import { buildApp } from './app.ts'

await runMain('chat', async () => {
  const config = loadChatConfig()
  const log = pino(loggerOptions('chat', config.LOG_LEVEL))
  const deps = await createDeps(config, log)
  const app = buildApp(deps, config)
  app.addHook('onClose', async () => { await closeDeps(deps) })
  await deps.relay.start()
  await deps.userDeleted.start()
  await listenWithGrace(app, { port: config.PORT, host: config.HOST, graceMs: config.SHUTDOWN_GRACE_MS })
})
