// Login throttling: attempts counted atomically before the hash per (email, IP), per email and per IP; 429 with Retry-After; no lockout of the owner; Redis away fails open.
import t, { type Test } from 'tap'
import { startPrivateRedis } from '@chat-platform/platform/testing'
import { buildTestApp } from './helper.ts'
import { LoginThrottle, loginThrottleKeys } from '../src/login-throttle.ts'

const retryAfterOk = (t: Test, value: unknown, windowSeconds: number) => {
  const n = Number(value)
  t.ok(Number.isInteger(n) && n >= 1 && n <= windowSeconds, `Retry-After ${String(value)}`)
}

t.test('after LOGIN_MAX_FAILURES_PER_EMAIL_IP failures from one address, that email from that address is 429 with Retry-After, even with the right password', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '3', LOGIN_FAILURE_WINDOW_SECONDS: '600' })
  const u = await s.register({ email: 'target@example.com' })
  const other = await s.register({ email: 'bystander@example.com' })
  for (let i = 0; i < 3; i++) t.equal((await s.login(u.email, `wrong-${i}`)).statusCode, 401)
  const blocked = await s.login(u.email, u.password)
  t.equal(blocked.statusCode, 429)
  t.equal(blocked.json().code, 'rate_limited')
  t.match(blocked.headers['content-type'], /^application\/problem\+json/)
  retryAfterOk(t, blocked.headers['retry-after'], 600)
  t.equal((await s.login(' TARGET@example.com', u.password)).statusCode, 429, 'normalized email hits the same counter')
  t.equal((await s.login(other.email, other.password)).statusCode, 200, 'other accounts are unaffected')
  t.equal(await s.deps.redis.exists(`auth:login-fail:email-ip:127.0.0.1/${u.email}`), 1, 'counters live under auth:login-fail:* in the service prefix')
  t.equal(await s.deps.redis.get(`auth:login-fail:email:${u.email}`), '3', 'refused attempts are not counted')
})

t.test('unknown emails are counted like known ones (no enumeration through the limiter)', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '2' })
  for (let i = 0; i < 2; i++) t.equal((await s.login('ghost@example.com', 'x-wrong-x')).statusCode, 401)
  t.equal((await s.login('ghost@example.com', 'x-wrong-x')).statusCode, 429)
})

t.test('a successful login clears its (email, address) counter and is itself not counted', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '3', LOGIN_MAX_FAILURES_PER_EMAIL: '5', LOGIN_MAX_FAILURES_PER_IP: '5' })
  const u = await s.register()
  for (let i = 0; i < 2; i++) t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401)
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
  for (let i = 0; i < 2; i++) t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401, 'counting starts again')
  for (let i = 0; i < 6; i++) t.equal((await s.login(u.email, u.password)).statusCode, 200, `success ${i + 1} uses up nothing`)
  const [pair, email, ip] = loginThrottleKeys(u.email, '127.0.0.1')
  t.equal(await s.deps.redis.exists(pair), 0)
  t.equal(await s.deps.redis.get(email), '4', 'the four failures stay counted per email')
  t.equal(await s.deps.redis.get(ip), '4', 'and per address')
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

t.test('60 parallel wrong guesses: exactly the limit reach the hash check, the rest are 429 with Retry-After', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '10', LOGIN_FAILURE_WINDOW_SECONDS: '900' })
  const u = await s.register({ email: 'victim@example.com' })
  const before = await s.verifications()
  const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => s.login(u.email, `guess-${i}`, '198.51.100.9')))
  const statuses = answers.map((r) => r.statusCode)
  t.equal(statuses.filter((c) => c === 401).length, 10, '10 guesses checked and wrong')
  t.equal(statuses.filter((c) => c === 429).length, 50, 'the other 50 refused')
  t.equal(await s.verifications() - before, 10, 'argon2 ran for exactly the 10 counted guesses')
  for (const r of answers.filter((r) => r.statusCode === 429)) retryAfterOk(t, r.headers['retry-after'], 900)
  t.equal(await s.deps.redis.get(`auth:login-fail:email:${u.email}`), '10', 'the per-email counter saw only the 10')
})

t.test('a stranger throttled on the owner\'s email does not lock the owner out from another address', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '5', LOGIN_MAX_FAILURES_PER_EMAIL: '50' })
  const u = await s.register({ email: 'owner@example.com' })
  // The stranger hammers far past both limits from one address: only 5 attempts are ever counted.
  const stranger = await Promise.all(Array.from({ length: 80 }, (_, i) => s.login(u.email, `guess-${i}`, '203.0.113.66')))
  t.equal(stranger.filter((r) => r.statusCode === 401).length, 5)
  t.equal(stranger.filter((r) => r.statusCode === 429).length, 75)
  t.equal((await s.login(u.email, u.password, '203.0.113.66')).statusCode, 429, 'the stranger\'s address stays throttled even with the right password')
  t.equal((await s.login(u.email, u.password, '192.0.2.10')).statusCode, 200, 'the owner from home logs in')
  t.equal((await s.login(u.email, 'typo-typo', '192.0.2.10')).statusCode, 401, 'and has their own allowance for typos')
})

t.test('the per-email ceiling holds across many addresses', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '2', LOGIN_MAX_FAILURES_PER_EMAIL: '6' })
  const u = await s.register({ email: 'popular@example.com' })
  const before = await s.verifications()
  // 20 addresses, 2 guesses each, all at once: 40 guesses, at most 6 tested.
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => s.login(u.email, `guess-${i}`, `10.9.0.${1 + (i % 20)}`)))
  t.equal(answers.filter((r) => r.statusCode === 401).length, 6)
  t.equal(answers.filter((r) => r.statusCode === 429).length, 34)
  t.equal(await s.verifications() - before, 6, 'argon2 ran 6 times')
  const late = await s.login(u.email, u.password, '10.9.1.1')
  t.equal(late.statusCode, 429, 'past the ceiling the email is closed for the window, from anywhere')
  t.ok(Number(late.headers['retry-after']) >= 1)
  const other = await s.register()
  t.equal((await s.login(other.email, other.password, '10.9.0.1')).statusCode, 200, 'the addresses themselves are not blocked for other emails')
})

t.test('releases: success clears the pair and gives one back; undo gives all three back; never below zero, no key left without expiry', async (t) => {
  const s = await buildTestApp(t)
  const throttle = new LoginThrottle(s.deps.redis, { maxPerEmailIp: 10, maxPerEmail: 10, maxPerIp: 10, windowSeconds: 60 }, s.app.log)
  const keys = loginThrottleKeys('x@example.com', '10.0.0.1')
  const counts = async () => Promise.all(keys.map(async (k) => Number(await s.deps.redis.get(k) ?? 0)))
  await throttle.attempt('x@example.com', '10.0.0.1')
  await throttle.attempt('x@example.com', '10.0.0.1')
  t.same(await counts(), [2, 2, 2])
  for (const k of keys) t.ok(await s.deps.redis.pttl(k) > 0, `${k} expires`)
  await throttle.undo('x@example.com', '10.0.0.1')
  t.same(await counts(), [1, 1, 1])
  await throttle.succeeded('x@example.com', '10.0.0.1')
  t.same(await counts(), [0, 0, 0])
  t.equal(await s.deps.redis.exists(...keys), 0, 'counters at zero are deleted')
  await throttle.succeeded('x@example.com', '10.0.0.1')
  await throttle.undo('x@example.com', '10.0.0.1')
  t.equal(await s.deps.redis.exists(...keys), 0, 'a release after the window ended leaves nothing behind')
})

t.test('with Redis down, login still works (fails open) and the outage is logged', async (t) => {
  const redis = await startPrivateRedis(t)
  const s = await buildTestApp(t, { REDIS_URL: redis.url, LOGIN_MAX_FAILURES_PER_EMAIL_IP: '1' })
  const u = await s.register()
  await redis.stop()
  t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401)
  t.equal((await s.login(u.email, 'wrong-password')).statusCode, 401, 'no counting while Redis is away')
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
  t.match(s.logs(), /login throttling unavailable \(redis\); failing open/)
})
