// The real services started in-process on loopback ports (own database, NATS namespace, Redis prefix), for tests through the gateway.
import pino from 'pino'
import { createTestDatabase, testNamespace, testRedisPrefix, testKeys, freePort } from '@chat-platform/platform/testing'
import type { Teardown } from './helper.ts'

export type ServiceName = 'auth' | 'chat' | 'billing'

interface ServiceModule {
  loadConfig: (env: Record<string, string | undefined>) => Record<string, unknown>
  migrations: Record<string, unknown>
  createDeps: (config: never, log: pino.Logger) => Promise<Record<string, any>>
  closeDeps: (deps: never) => Promise<void>
  buildApp: (deps: never, config: never) => { listen: (o: { port: number, host: string }) => Promise<string>, close: () => Promise<unknown>, addHook: (...a: any[]) => unknown }
}

async function load (name: ServiceName): Promise<ServiceModule> {
  // Each service package exports its src/ files; the names follow the service skeleton.
  const [config, migrations, deps, app] = await Promise.all([
    import(`@chat-platform/${name}/config.ts`),
    import(`@chat-platform/${name}/db/migrations/index.ts`),
    import(`@chat-platform/${name}/deps.ts`),
    import(`@chat-platform/${name}/app.ts`)
  ])
  const loadConfig = Object.entries(config).find(([k, v]) => /^load\w+Config$/.test(k) && typeof v === 'function')?.[1] as ServiceModule['loadConfig']
  return { loadConfig, migrations: migrations.migrations, createDeps: deps.createDeps, closeDeps: deps.closeDeps, buildApp: app.buildApp }
}

/** Starts the named services on free loopback ports, wired to each other; returns their URLs. */
export async function startServices (t: Teardown, names: ServiceName[], env: Record<string, string> = {}): Promise<Record<ServiceName, string>> {
  const ports = { auth: await freePort(), chat: await freePort(), billing: await freePort() }
  const urls = { auth: `http://127.0.0.1:${ports.auth}`, chat: `http://127.0.0.1:${ports.chat}`, billing: `http://127.0.0.1:${ports.billing}` }
  const ns = testNamespace(t)
  const prefix = testRedisPrefix(t)
  for (const name of names) {
    const mod = await load(name)
    const url = await createTestDatabase(t, { [name]: mod.migrations as never })
    const config = mod.loadConfig({
      NODE_ENV: 'test',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      DATABASE_URL: url,
      DATABASE_POOL_MAX: '4',
      BILLING_BATCH_CONCURRENCY: '1',
      EVENTS_NAMESPACE: ns,
      REDIS_PREFIX: prefix,
      JWT_PRIVATE_KEY: testKeys.privateKey,
      JWT_PUBLIC_KEY: testKeys.publicKey,
      AUTH_URL: urls.auth,
      CHAT_URL: urls.chat,
      BILLING_URL: urls.billing,
      OUTBOX_POLL_MS: '50',
      ...env
    })
    const log = pino({ level: 'silent' })
    const deps = await mod.createDeps(config as never, log)
    const app = mod.buildApp(deps as never, config as never)
    app.addHook('onClose', async () => { await mod.closeDeps(deps as never) })
    t.teardown(() => app.close())
    await app.listen({ port: ports[name], host: '127.0.0.1' })
  }
  return urls
}
