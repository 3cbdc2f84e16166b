// The locally counted, Redis-synced rate limit (authenticated zone): no Redis round trip per request below half the
// limit, exact near it, shared by replicas, counts sent to Redis within the sync interval; through real gateways.
import t from 'tap'
import { Redis } from 'ioredis'
import { signTestToken, startPrivateRedis, testRedisPrefix, waitFor } from '@chat-platform/platform/testing'
import { startGateway, startUpstream, bearer } from '../helper.ts'

const chat = await startUpstream(t, { name: 'chat' })
const get = (url: string, headers: Record<string, string>) => fetch(`${url}/api/sessions`, { headers })

/** Script calls Redis has executed (EVALSHA + EVAL), from its own statistics. */
async function scriptCalls (redis: Redis): Promise<number> {
  const info = await redis.info('commandstats')
  return [...info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
}

t.test('below half the limit requests are counted locally: a handful of Redis calls for 40 requests, and Redis catches up', async (t) => {
  const redis = await startPrivateRedis(t)
  const prefix = testRedisPrefix(t)
  const gw = await startGateway(t, { CHAT_URL: chat.url, REDIS_URL: redis.url, REDIS_PREFIX: prefix, RATE_LIMIT_MAX: '100', RATE_LIMIT_SYNC_MS: '50' })
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const user = bearer(signTestToken(201))
  const before = await scriptCalls(admin)
  const remaining: number[] = []
  for (let i = 0; i < 40; i++) {
    const res = await get(gw.url, user)
    t.equal(res.status, 200)
    remaining.push(Number(res.headers.get('ratelimit-remaining')))
  }
  t.same(remaining, Array.from({ length: 40 }, (_, i) => 99 - i), 'RateLimit-Remaining counts down by one per request')
  const count = await waitFor(async () => { const v = Number(await admin.get(`${prefix}gw:rl:user:201`)); return v === 40 ? v : undefined }, { what: 'Redis to hold the 40 requests' })
  t.equal(count, 40, 'every locally counted request reached Redis')
  const calls = await scriptCalls(admin) - before
  t.ok(calls >= 1 && calls <= 20, `Redis scripts ran ${calls} times for 40 requests, not once per request`)
  t.ok(await admin.pttl(`${prefix}gw:rl:user:201`) > 0, 'the window expires in Redis')
})

t.test('from half the limit on, every request is counted in Redis: two replicas alternating let exactly the limit through', async (t) => {
  const prefix = testRedisPrefix(t)
  const env = { CHAT_URL: chat.url, REDIS_PREFIX: prefix, RATE_LIMIT_MAX: '10', RATE_LIMIT_SYNC_MS: '1000' }
  const one = await startGateway(t, env)
  const two = await startGateway(t, env)
  const user = bearer(signTestToken(202))
  const statuses: number[] = []
  for (let i = 0; i < 14; i++) statuses.push((await get(i % 2 ? two.url : one.url, user)).status)
  t.same(statuses, [...Array(10).fill(200), ...Array(4).fill(429)], 'ten served, then refused, although the sync interval never passed')
})

t.test('a replica learns what the others counted: a user spread over two replicas is refused once the shared count is spent', async (t) => {
  const prefix = testRedisPrefix(t)
  const env = { CHAT_URL: chat.url, REDIS_PREFIX: prefix, RATE_LIMIT_MAX: '40', RATE_LIMIT_SYNC_MS: '20' }
  const one = await startGateway(t, env)
  const two = await startGateway(t, env)
  const user = bearer(signTestToken(203))
  // 15 on one (all below half: mostly local), then 40 more on two: two must refuse after 25 of them.
  for (let i = 0; i < 15; i++) t.equal((await get(one.url, user)).status, 200)
  const admin = new Redis(one.config.REDIS_URL)
  t.teardown(() => admin.disconnect())
  await waitFor(async () => Number(await admin.get(`${prefix}gw:rl:user:203`)) === 15, { what: 'replica one to sync its 15 requests' })
  let served = 0
  for (let i = 0; i < 40; i++) if ((await get(two.url, user)).status === 200) served++
  t.equal(served, 25, 'replica two serves only what is left of the shared budget')
})

t.test('Redis away: requests are still served and counted as fail-open once they need Redis; counting resumes when it is back', async (t) => {
  const redis = await startPrivateRedis(t)
  const gw = await startGateway(t, { CHAT_URL: chat.url, REDIS_URL: redis.url, RATE_LIMIT_MAX: '1000', RATE_LIMIT_SYNC_MS: '20' })
  const user = bearer(signTestToken(204))
  await waitFor(async () => (await get(gw.url, user)).headers.get('ratelimit-remaining') === '999', { what: 'the limiter to use the private Redis' })
  await redis.stop()
  for (let i = 0; i < 5; i++) t.equal((await get(gw.url, user)).status, 200, `request ${i} served without Redis`)
  const fresh = bearer(signTestToken(205))
  t.equal((await get(gw.url, fresh)).status, 200, 'a user the replica has not seen this window is served too')
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  t.ok(Number(/gateway_rate_limit_fail_open_total\{[^}]*zone="api"[^}]*\} (\d+)/.exec(metrics)?.[1]) >= 1, 'the request that needed Redis is counted as fail-open')
  await redis.start()
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  await waitFor(async () => { await get(gw.url, fresh); return Number(await admin.get(`${gw.config.REDIS_PREFIX}gw:rl:user:205`)) > 0 }, { what: 'counts to reach Redis again', timeoutMs: 15_000 })
  t.pass('counting in Redis resumes')
})
