// The per-user in-flight cap: held in Redis with per-slot expiry, kept per process while Redis is down.
import t from 'tap'
import pino from 'pino'
import { createRedis } from '@chat-platform/platform'
import { startPrivateRedis, testRedisPrefix, waitFor } from '@chat-platform/platform/testing'
import { InflightLimiter } from '../src/inflight.ts'

const log = pino({ level: 'silent' })

t.test('at most max slots per user; release frees one; users are independent', async (t) => {
  const redis = createRedis({ url: 'redis://127.0.0.1:6379', prefix: testRedisPrefix(t) })
  t.teardown(() => redis.disconnect())
  const limiter = new InflightLimiter(redis, { max: 2, ttlMs: 60_000, log })
  await waitFor(() => redis.status === 'ready')
  const a = await limiter.acquire(1)
  const b = await limiter.acquire(1)
  t.ok(a && b)
  t.equal(await limiter.acquire(1), null)
  t.ok(await limiter.acquire(2), 'another user')
  await a!.release()
  const c = await limiter.acquire(1)
  t.ok(c, 'a released slot is free again')
  await b!.renew()
  t.equal(await limiter.acquire(1), null)
  t.equal(await redis.zcard('chat:inflight:1'), 2)
  t.ok(await redis.pttl('chat:inflight:1') > 0, 'the key itself expires')
})

t.test('a slot that is never released (a crashed replica) expires', async (t) => {
  const redis = createRedis({ url: 'redis://127.0.0.1:6379', prefix: testRedisPrefix(t) })
  t.teardown(() => redis.disconnect())
  const limiter = new InflightLimiter(redis, { max: 1, ttlMs: 300, log })
  await waitFor(() => redis.status === 'ready')
  t.ok(await limiter.acquire(1))
  t.equal(await limiter.acquire(1), null)
  t.ok(await waitFor(() => limiter.acquire(1), { what: 'slot expiry' }))
})

t.test('while Redis is down the cap is kept per process', async (t) => {
  const server = await startPrivateRedis(t)
  const redis = createRedis({ url: server.url, prefix: 'p:' })
  t.teardown(() => redis.disconnect())
  const limiter = new InflightLimiter(redis, { max: 2, ttlMs: 60_000, log })
  await waitFor(() => redis.status === 'ready')
  t.ok(await limiter.acquire(1))
  await server.stop()
  await waitFor(() => redis.status !== 'ready', { what: 'client notices' })
  const a = await limiter.acquire(1)
  const b = await limiter.acquire(1)
  t.ok(a && b, 'local slots')
  t.equal(await limiter.acquire(1), null, 'local cap')
  await a!.release()
  t.ok(await limiter.acquire(1))
})
