import pino from 'pino'
import { loadBillingConfig } from './src/config.ts'
import { createDeps, closeDeps } from './src/deps.ts'
import { buildApp } from './src/app.ts'
const config = loadBillingConfig()
const log = pino({ level: 'debug' })
console.log('a')
const deps = await createDeps(config, log)
console.log('b')
const app = buildApp(deps, config)
await deps.start()
console.log('c')
await app.listen({ port: 39113 })
console.log('d')
await app.close(); await closeDeps(deps)
console.log('e')
