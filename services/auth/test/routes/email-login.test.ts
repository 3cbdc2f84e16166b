// POST /api/auth/email-login: the token's claims, the stored admin role and its short tokens, one hash check whatever the email,
// rehash, a flood past the argon2 queue.
import t from 'tap'
import { hash, parseOptions } from '@node-rs/argon2'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, bearer } from '../helper.ts'
import { decodeJwt } from '../jwt.ts'
import { setUserRoleByEmail } from '../../src/db/repositories/users.ts'
import { passwordHashing } from '../../src/passwords.ts'
import { holdHashing } from '../hold-hashing.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

t.test('a correct login returns an EdDSA bearer token with sub, iat, exp (JWT_TTL), iss and a fresh jti', async (t) => {
  const s = await buildTestApp(t, { JWT_TTL: '3600' })
  const u = await s.register({ email: 'carol@example.com' })
  const res = await s.login('  CAROL@example.com ', u.password)
  t.equal(res.statusCode, 200, 'email is trimmed and lower-cased at login too')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
  t.equal(body.expires_in, 3600)
  t.equal(body.token_type, 'bearer')
  const { header, payload } = decodeJwt(body.access_token)
  t.equal(header.alg, 'EdDSA')
  t.equal(payload.sub, String(u.user_id))
  t.equal(payload.iss, 'chat-platform')
  t.match(payload.jti, UUID)
  t.equal((payload.exp as number) - (payload.iat as number), 3600)
  t.ok(Math.abs((payload.iat as number) - Date.now() / 1000) < 60)
  t.notOk('role' in payload)
  t.notOk('email' in payload, 'no personal data in the token')

  const again = decodeJwt((await s.login('carol@example.com', u.password)).json().access_token)
  t.not(again.payload.jti, payload.jti, 'every token has its own jti')

  await s.seedBalance(u.user_id, 7)
  const verify = await s.app.inject({ url: '/api/auth/verify', headers: bearer(body.access_token) })
  t.equal(verify.statusCode, 200, 'the token is accepted by the service itself')
})

t.test('JWT_TTL defaults to one hour', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  const { payload } = decodeJwt(await s.tokenFor(u.email, u.password))
  t.equal((payload.exp as number) - (payload.iat as number), 3600)
})

t.test('registering any address, however spelled, never gives an admin token', async (t) => {
  const s = await buildTestApp(t)
  const boss = await s.register({ email: '  BOSS@Example.com ' })
  const row = await s.deps.db.selectFrom('users').select(['email', 'role']).where('id', '=', boss.user_id).executeTakeFirstOrThrow()
  t.same(row, { email: 'boss@example.com', role: 'user' }, 'stored normalized, role user')
  t.notOk('role' in decodeJwt(await s.tokenFor('boss@example.com', boss.password)).payload)
  // A role smuggled into the registration body is dropped like any unknown field.
  const sneaky = await s.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: 'sneaky@example.com', password: 'correct horse battery', nickname: 'x', role: 'admin' } })
  t.equal(sneaky.statusCode, 200)
  t.notOk('role' in decodeJwt(await s.tokenFor('sneaky@example.com', 'correct horse battery')).payload)
})

t.test('the stored role: granted, the next login is an admin token living ADMIN_JWT_TTL; revoked, the next login has no role', async (t) => {
  const s = await buildTestApp(t, { JWT_TTL: '7200', ADMIN_JWT_TTL: '600' })
  const u = await s.register({ email: 'root@example.com' })
  const before = decodeJwt(await s.tokenFor(u.email, u.password)).payload
  t.notOk('role' in before)
  t.equal((before.exp as number) - (before.iat as number), 7200)

  t.ok(await setUserRoleByEmail(s.deps.db, u.email, 'admin'))
  const admin = decodeJwt(await s.tokenFor(u.email, u.password)).payload
  t.equal(admin.role, 'admin')
  t.equal((admin.exp as number) - (admin.iat as number), 600, 'exp = iat + ADMIN_JWT_TTL')
  await s.seedBalance(u.user_id, 1)
  const me = await s.app.inject({ url: '/api/auth/verify', headers: bearer(await s.tokenFor(u.email, u.password)) })
  t.equal(me.statusCode, 200, 'the admin token is accepted')

  t.ok(await setUserRoleByEmail(s.deps.db, u.email, 'user'))
  const after = decodeJwt(await s.tokenFor(u.email, u.password)).payload
  t.notOk('role' in after)
  t.equal((after.exp as number) - (after.iat as number), 7200)
  t.equal(await setUserRoleByEmail(s.deps.db, 'nobody@example.com', 'admin'), undefined, 'an unknown address changes nothing')
})

t.test('an admin token never outlives JWT_TTL when that is the shorter one', async (t) => {
  const s = await buildTestApp(t, { JWT_TTL: '300', ADMIN_JWT_TTL: '3600' })
  const u = await s.register()
  await setUserRoleByEmail(s.deps.db, u.email, 'admin')
  const { payload } = decodeJwt(await s.tokenFor(u.email, u.password))
  t.equal(payload.role, 'admin')
  t.equal((payload.exp as number) - (payload.iat as number), 300)
})

t.test('the role column refuses anything but user and admin', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  await t.rejects(s.deps.db.updateTable('users').set({ role: 'root' as 'admin' }).where('id', '=', u.user_id).execute(), { code: '23514' })
})

t.test('every login attempt costs exactly one argon2 verification: unknown email, wrong password, no password, right password', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'known@example.com' })
  await s.deps.db.insertInto('users').values({ email: 'wechat-only@example.com', password_hash: null, nickname: 'wx' }).execute()
  const cases: [string, string, number][] = [
    ['nobody-here@example.com', 'not the password', 401],
    [u.email, 'not the password', 401],
    ['wechat-only@example.com', 'not the password', 401],
    [u.email, u.password, 200]
  ]
  for (const [email, password, status] of cases) {
    const before = await s.verifications()
    t.equal((await s.login(email, password)).statusCode, status, email)
    t.equal(await s.verifications() - before, 1, `${email}: one verification`)
  }
})

t.test('a wrong password and an unknown email get the same 401 invalid_credentials', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'dave@example.com' })
  const wrong = await s.login(u.email, 'not the password')
  const unknown = await s.login('nobody@example.com', 'not the password')
  for (const res of [wrong, unknown]) {
    t.equal(res.statusCode, 401)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
  }
  const strip = (b: Record<string, unknown>) => ({ ...b, request_id: undefined })
  t.same(strip(wrong.json()), strip(unknown.json()), 'identical bodies')
  t.equal(wrong.json().code, 'invalid_credentials')
})

t.test('a WeChat-only user (no password) cannot log in by email', async (t) => {
  const s = await buildTestApp(t)
  await s.deps.db.insertInto('users').values({ email: 'wx@example.com', password_hash: null, nickname: 'wx' }).execute()
  const res = await s.login('wx@example.com', 'anything-at-all')
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'invalid_credentials')
})

t.test('missing or empty fields are 400 validation_failed', async (t) => {
  const s = await buildTestApp(t)
  for (const payload of [{ email: 'a@example.com' }, { password: 'x' }, { email: '', password: 'password-1' }, { email: 'a@example.com', password: '' }]) {
    const res = await s.app.inject({ method: 'POST', url: '/api/auth/email-login', payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().code, 'validation_failed')
  }
})

t.test('a hash made with weaker parameters is upgraded at the next successful login', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'old@example.com' })
  const weak = await hash(u.password, { algorithm: 2, memoryCost: 4096, timeCost: 3, parallelism: 1 })
  await s.deps.db.updateTable('users').set({ password_hash: weak }).where('id', '=', u.user_id).execute()
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
  const row = await s.deps.db.selectFrom('users').select('password_hash').where('id', '=', u.user_id).executeTakeFirstOrThrow()
  t.equal(parseOptions(row.password_hash!).memoryCost, 19456)
  t.equal((await s.login(u.email, u.password)).statusCode, 200, 'the new hash verifies')
})

t.test('a full argon2 queue skips the upgrade of a hash with other parameters, never the login: the next login upgrades it', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'old-busy@example.com' })
  // Other parameters than today's, and slow to verify (t=30, ~0.2 s), so the test sees the verification running.
  const other = await hash(u.password, { algorithm: 2, memoryCost: 19456, timeCost: 30, parallelism: 1 })
  await s.deps.db.updateTable('users').set({ password_hash: other }).where('id', '=', u.user_id).execute()
  const stored = async () => (await s.deps.db.selectFrom('users').select('password_hash').where('id', '=', u.user_id).executeTakeFirstOrThrow()).password_hash!

  // Every slot but one held, one waiting place: the login's verification takes the last slot. While it runs, a task
  // takes the waiting place and then there is none (maxWaiting 0 no longer admits a waiter, and does not evict one).
  // The verification over, that task gets its slot: every slot is busy and no one may wait when the upgrade asks.
  const held = holdHashing(t, { tasks: passwordHashing.limit - 1, maxWaiting: 1 })
  const before = await s.verifications()
  const login = s.login(u.email, u.password)
  await waitFor(() => passwordHashing.inFlight === passwordHashing.limit, { what: 'the login verifying', intervalMs: 1 })
  t.equal(await s.verifications(), before + 1, 'the slot taken is the login\'s verification')
  held.hold()
  passwordHashing.maxWaiting = 0

  t.equal((await login).statusCode, 200, 'the right password logs in')
  t.equal(await stored(), other, 'the upgrade was skipped')
  t.match(s.logs(), /password hash upgrade skipped/)
  await held.release()
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
  t.equal(parseOptions(await stored()).timeCost, 2, 'upgraded at the next login')
})

t.test('a login flood past the argon2 queue is 503 at once, with Retry-After, and counts neither an attempt nor a verification', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '2' })
  const u = await s.register({ email: 'flooded@example.com' })
  const held = holdHashing(t, { tasks: passwordHashing.limit + 1, maxWaiting: 1 })

  const before = await s.verifications()
  const refusedBefore = await s.metric('auth_password_hash_refused_total')
  for (const password of ['wrong 1', 'wrong 2', 'wrong 3', u.password]) {
    const res = await s.login(u.email, password)
    t.equal(res.statusCode, 503, password)
    t.equal(res.headers['retry-after'], '1')
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'service_unavailable')
  }
  t.equal(await s.verifications(), before, 'no verification counted')
  t.equal(await s.metric('auth_password_hash_refused_total') - refusedBefore, 4, 'every refusal in /metrics')
  t.match(s.logs(), /"msg":"request shed"/, 'logged as shed')
  t.notMatch(s.logs(), /"msg":"request failed"/, 'not as a failure (no error line, no stack, per refused request)')

  await held.release()
  // Three refused wrong passwords were not counted: with a limit of 2 per (email, IP), one more wrong one is still
  // a 401 and the right one logs in.
  t.equal((await s.login(u.email, 'wrong 4')).statusCode, 401)
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
})
