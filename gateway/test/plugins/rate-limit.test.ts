// Rate limits through real gateways and Redis: per user, per IP, stricter on login, shared by replicas, failing open without Redis.
import t from 'tap'
import { signTestToken, startPrivateRedis, testRedisPrefix, waitFor } from '@chat-platform/platform/testing'
import { startGateway, startUpstream, bearer } from '../helper.ts'

const auth = await startUpstream(t, { name: 'auth' })
const chat = await startUpstream(t, { name: 'chat' })
const limits = { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000', AUTH_RATE_LIMIT_MAX: '2', AUTH_RATE_LIMIT_WINDOW_MS: '60000' }

const get = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers })
const login = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/api/auth/email-login`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"email":"a@b.c","password":"x"}' })

t.test('per user: the standard headers count down, then 429 rate_limited with Retry-After; another user is unaffected', async (t) => {
  const gw = await startGateway(t, { AUTH_URL: auth.url, CHAT_URL: chat.url, ...limits })
  const alice = bearer(signTestToken(101))
  for (const remaining of ['2', '1', '0']) {
    const res = await get(`${gw.url}/api/sessions`, alice)
    t.equal(res.status, 200)
    t.equal(res.headers.get('ratelimit-limit'), '3')
    t.equal(res.headers.get('ratelimit-remaining'), remaining)
    t.ok(Number(res.headers.get('ratelimit-reset')) > 0)
  }
  const before = chat.seen.length
  const refused = await get(`${gw.url}/api/sessions`, alice)
  t.equal(refused.status, 429)
  t.match(refused.headers.get('content-type'), /^application\/problem\+json/)
  const retryAfter = Number(refused.headers.get('retry-after'))
  t.ok(retryAfter >= 1 && retryAfter <= 60, 'Retry-After in seconds within the window')
  t.equal(refused.headers.get('ratelimit-remaining'), '0')
  const body = await refused.json()
  t.equal(body.code, 'rate_limited')
  t.equal(body.status, 429)
  t.equal(body.request_id, refused.headers.get('x-request-id'))
  t.equal(chat.seen.length, before, 'a refused request is not proxied')

  const bob = await get(`${gw.url}/api/sessions`, bearer(signTestToken(102)))
  t.equal(bob.status, 200, 'the limit is per user, not global')
  t.equal(bob.headers.get('ratelimit-remaining'), '2')

  const metrics = await (await get(`${gw.url}/metrics`)).text()
  t.match(metrics, /gateway_rate_limited_total\{[^}]*zone="api"[^}]*\} 1/)
})

t.test('requests with a bad token are limited per IP (and still 401 until then)', async (t) => {
  const gw = await startGateway(t, { CHAT_URL: chat.url, ...limits })
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push((await get(`${gw.url}/api/sessions`, { authorization: 'Bearer not.a.token' })).status)
  t.same(statuses, [401, 401, 401, 429])
})

t.test('login and register are limited per IP more strictly; X-Forwarded-For cannot rotate the key (TRUST_PROXY off)', async (t) => {
  const gw = await startGateway(t, { AUTH_URL: auth.url, ...limits })
  const first = await login(gw.url, { 'x-forwarded-for': '10.0.0.1' })
  t.equal(first.status, 200)
  t.equal(first.headers.get('ratelimit-limit'), '2')
  t.equal((await login(gw.url, { 'x-forwarded-for': '10.0.0.2' })).status, 200)
  const third = await login(gw.url, { 'x-forwarded-for': '10.0.0.3' })
  t.equal(third.status, 429)
  t.ok(third.headers.get('retry-after'))
  const register = await fetch(`${gw.url}/api/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(register.status, 429, 'register shares the strict login budget')
  const verify = await get(`${gw.url}/api/auth/verify`, bearer(signTestToken(103)))
  t.equal(verify.status, 200, 'authenticated auth routes use the general limit')
})

t.test('with TRUST_PROXY set, the client address comes from X-Forwarded-For', async (t) => {
  const gw = await startGateway(t, { AUTH_URL: auth.url, TRUST_PROXY: '127.0.0.1', ...limits })
  for (const ip of ['10.0.0.1', '10.0.0.1']) t.equal((await login(gw.url, { 'x-forwarded-for': ip })).status, 200)
  t.equal((await login(gw.url, { 'x-forwarded-for': '10.0.0.1' })).status, 429)
  t.equal((await login(gw.url, { 'x-forwarded-for': '10.0.0.2' })).status, 200, 'another client behind the trusted proxy has its own budget')
})

t.test('two gateway replicas share one limit through Redis', async (t) => {
  const prefix = testRedisPrefix(t)
  const one = await startGateway(t, { CHAT_URL: chat.url, REDIS_PREFIX: prefix, ...limits })
  const two = await startGateway(t, { CHAT_URL: chat.url, REDIS_PREFIX: prefix, ...limits })
  const carol = bearer(signTestToken(104))
  const statuses = []
  for (const gw of [one, two, one, two]) statuses.push((await get(`${gw.url}/api/sessions`, carol)).status)
  t.same(statuses, [200, 200, 200, 429])
})

t.test('Redis down: the gateway keeps serving (fail open), logs and counts it; /readyz says so', async (t) => {
  const redis = await startPrivateRedis(t)
  const gw = await startGateway(t, { CHAT_URL: chat.url, REDIS_URL: redis.url, ...limits })
  const dave = bearer(signTestToken(105))
  await waitFor(async () => (await get(`${gw.url}/api/sessions`, dave)).headers.get('ratelimit-remaining') === '2', { what: 'the limiter to use the private Redis' })
  await redis.stop()
  for (let i = 0; i < 5; i++) t.equal((await get(`${gw.url}/api/sessions`, dave)).status, 200, `request ${i} served without Redis`)
  const metrics = await (await get(`${gw.url}/metrics`)).text()
  const failOpen = Number(/gateway_rate_limit_fail_open_total\{[^}]*zone="api"[^}]*\} (\d+)/.exec(metrics)?.[1])
  t.ok(failOpen >= 5, 'every unlimited request is counted')
  const ready = await get(`${gw.url}/readyz`)
  t.equal(ready.status, 503)
  t.match((await ready.json()).checks.redis, /failing/)

  await redis.start()
  await waitFor(async () => (await get(`${gw.url}/api/sessions`, dave)).headers.get('ratelimit-remaining') === '2', { what: 'limits to apply again once Redis is back', timeoutMs: 15_000 })
  t.pass('limits apply again after Redis returns')
})
