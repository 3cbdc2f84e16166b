// tokens: read from billing's Redis cache, else from billing's internal endpoint; 503 when neither answers.
import t from 'tap'
import { startPrivateRedis } from '@chat-platform/platform/testing'
import { ProblemError } from '@chat-platform/platform'
import { buildTestApp } from './helper.ts'
import { balanceCacheKey as balanceKey } from '@chat-platform/contracts'
import { readTokens } from '../src/balances.ts'

t.test('the cached balance under billing:balance:<id> (in the service prefix) is the answer, negative included', async (t) => {
  const s = await buildTestApp(t)
  t.equal(balanceKey(42), 'billing:balance:42')
  await s.seedBalance(42, 870)
  t.equal(await readTokens(s.deps.redis, s.config.BILLING_URL, 42), 870)
  await s.seedBalance(42, -15)
  t.equal(await readTokens(s.deps.redis, s.config.BILLING_URL, 42), -15, 'a bounded overdraft shows as negative')
})

t.test('a missing or unreadable cache entry with billing unreachable is 503 service_unavailable', async (t) => {
  const s = await buildTestApp(t)
  const err = await readTokens(s.deps.redis, s.config.BILLING_URL, 7).catch((e: unknown) => e)
  t.type(err, ProblemError)
  t.equal((err as ProblemError).code, 'service_unavailable')
  await s.deps.redis.set(balanceKey(7), 'garbage')
  t.equal(((await readTokens(s.deps.redis, s.config.BILLING_URL, 7).catch((e: unknown) => e)) as ProblemError).code, 'service_unavailable')
})

t.test('with Redis down, verify asks billing; with billing also down it is 503 (never a made-up 0)', async (t) => {
  const redis = await startPrivateRedis(t)
  const s = await buildTestApp(t, { REDIS_URL: redis.url })
  const u = await s.register()
  const token = await s.tokenFor(u.email, u.password)
  await s.seedBalance(u.user_id, 10)
  t.equal((await s.app.inject({ url: '/api/auth/verify', headers: { authorization: `Bearer ${token}` } })).json().user.tokens, 10)
  await redis.stop()
  const res = await s.app.inject({ url: '/api/auth/verify', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'service_unavailable')
  t.match(s.logs(), /balance cache unavailable; asking billing/)
})
