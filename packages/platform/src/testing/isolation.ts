// Per-test namespaces for NATS streams and Redis keys on the shared servers, cleaned up afterwards.
import { randomBytes } from 'node:crypto'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { Redis } from 'ioredis'

interface Teardown { teardown: (fn: () => unknown) => void }

export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222'
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A unique EVENTS_NAMESPACE; its streams are deleted at teardown. */
export function testNamespace (t: Teardown, natsUrl = TEST_NATS_URL): string {
  const ns = `t${randomBytes(5).toString('hex')}`
  t.teardown(async () => {
    const nc = await connect({ servers: natsUrl, timeout: 2_000 }).catch(() => null)
    if (!nc) return
    try {
      const jsm = await jetstreamManager(nc)
      for await (const s of jsm.streams.list()) {
        if (s.config.name.startsWith(`${ns}_`)) await jsm.streams.delete(s.config.name)
      }
    } finally { await nc.close() }
  })
  return ns
}

/** A unique Redis key prefix; its keys are deleted at teardown. */
export function testRedisPrefix (t: Teardown, redisUrl = TEST_REDIS_URL): string {
  const prefix = `t${randomBytes(5).toString('hex')}:`
  t.teardown(async () => {
    const r = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await r.connect()
      let cursor = '0'
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
        cursor = next
        if (keys.length) await r.del(...keys)
      } while (cursor !== '0')
    } catch { /* redis away: nothing to clean */ } finally { r.disconnect() }
  })
  return prefix
}

/** Polls `check` until it returns a truthy value (no fixed sleeps in tests). */
export async function waitFor<T> (check: () => Promise<T> | T, opts: { timeoutMs?: number, intervalMs?: number, what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000)
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v
    } catch (err) { last = err }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 25))
  }
}
