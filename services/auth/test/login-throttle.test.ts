// Login throttling: failures per email and per client IP in Redis give 429 with Retry-After; Redis away fails open.
import t from 'tap'
import { startPrivateRedis } from '@chat-platform/platform/testing'
import { buildTestApp } from './helper.ts'

t.test('after LOGIN_MAX_FAILURES_PER_EMAIL failures the email is 429 rate_limited with Retry-After, even with the right password', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL: '3', LOGIN_FAILURE_WINDOW_SECONDS: '600' })
  const u = await s.register({ email: 'target@example.com' })
  const other = await s.register({ email: 'bystander@example.com' })
  for (let i = 0; i < 3; i++) t.equal((await s.login(u.email, `wrong-${i}`)).statusCode, 401)
  const blocked = await s.login(u.email, u.password)
  t.equal(blocked.statusCode, 429)
  t.equal(blocked.json().code, 'rate_limited')
  t.match(blocked.headers['content-type'], /^application\/problem\+json/)
  const retryAfter = Number(blocked.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 600, `Retry-After ${blocked.headers['retry-after']}`)
  t.equal((await s.login(' TARGET@example.com', u.password)).statusCode, 429, 'normalized email hits the same counter')
  t.equal((await s.login(other.email, other.password)).statusCode, 200, 'other accounts are unaffected')
  t.equal(await s.deps.redis.exists(`auth:login-fail:email:${u.email}`), 1, 'counter lives under auth:login-fail:* in the service prefix')
})

t.test('unknown emails are counted like known ones (no enumeration through the limiter)', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL: '2' })
  for (let i = 0; i < 2; i++) t.equal((await s.login('ghost@example.com', 'x-wrong-x')).statusCode, 401)
  t.equal((await s.login('ghost@example.com', 'x-wrong-x')).statusCode, 429)
})

t.test('a successful login resets the email counter', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL: '3' })
  const u = await s.register()
  for (let i = 0; i < 2; i++) t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401)
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
  for (let i = 0; i < 2; i++) t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401, 'counting starts again')
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
})

t.test('after LOGIN_MAX_FAILURES_PER_IP failures from one IP (any emails) that IP is 429; other IPs are not', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_IP: '3' })
  const u = await s.register()
  for (let i = 0; i < 3; i++) t.equal((await s.login(`spray${i}@example.com`, 'password1', '10.1.1.1')).statusCode, 401)
  const blocked = await s.login(u.email, u.password, '10.1.1.1')
  t.equal(blocked.statusCode, 429)
  t.ok(Number(blocked.headers['retry-after']) >= 1)
  t.equal((await s.login(u.email, u.password, '10.1.1.2')).statusCode, 200)
})

t.test('behind the gateway the client IP comes from X-Forwarded-For (one trusted hop)', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_IP: '2' })
  const u = await s.register()
  const viaGateway = (xff: string, password: string) => s.app.inject({ method: 'POST', url: '/api/auth/email-login', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': xff }, payload: { email: u.email, password } })
  // A client-supplied X-Forwarded-For entry is to the left of the one the gateway appends: it is not trusted.
  for (let i = 0; i < 2; i++) t.equal((await viaGateway(`198.51.100.${i}, 203.0.113.7`, 'wrong-password')).statusCode, 401)
  t.equal((await s.login('fresh@example.com', 'whatever-1', '127.0.0.1')).statusCode, 401, 'the gateway address itself is not blocked')
  const blocked = await viaGateway('203.0.113.7', u.password)
  t.equal(blocked.statusCode, 429, 'same client IP, rotated spoofed entries: still blocked')
})

t.test('with Redis down, login still works (fails open) and the outage is logged', async (t) => {
  const redis = await startPrivateRedis(t)
  const s = await buildTestApp(t, { REDIS_URL: redis.url, LOGIN_MAX_FAILURES_PER_EMAIL: '1' })
  const u = await s.register()
  await redis.stop()
  t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401)
  t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401, 'no counting while Redis is away')
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
  t.match(s.logs(), /login throttling unavailable \(redis\); failing open/)
})
