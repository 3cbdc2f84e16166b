// PUT /api/user/password: the old password required and throttled; every session ends, the caller gets a fresh one.
import t from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, bearer, type TestApp } from '../helper.ts'
import { decodeJwt } from '../jwt.ts'

const change = (s: TestApp, token: string, body: unknown, remoteAddress?: string) =>
  s.app.inject({ method: 'PUT', url: '/api/user/password', headers: bearer(token), payload: body as object, remoteAddress })
const verify = (s: TestApp, token: string) => s.app.inject({ url: '/api/auth/verify', headers: bearer(token) })

t.test('a password change ends every session and token of the user, answers a fresh pair, and the new password logs in', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  await s.seedBalance(u.user_id, 3)
  const phone = (await s.login(u.email, u.password)).json()
  const laptop = (await s.login(u.email, u.password)).json()
  t.equal((await verify(s, phone.access_token)).statusCode, 200, 'cached before the change')

  const res = await change(s, laptop.access_token, { old_password: u.password, new_password: 'a brand new secret' })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.type(body.message, 'string')
  t.equal(body.token_type, 'bearer')
  t.not(decodeJwt(body.access_token).payload.sid, decodeJwt(laptop.access_token).payload.sid, 'a new session')

  await waitFor(async () => (await verify(s, phone.access_token)).statusCode === 401, { what: 'the other device refused' })
  await waitFor(async () => (await verify(s, laptop.access_token)).statusCode === 401, { what: 'the calling token refused' })
  for (const r of [phone.refresh_token, laptop.refresh_token]) {
    t.equal((await s.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: r } })).statusCode, 401, 'old refresh tokens dead')
  }
  t.equal((await verify(s, body.access_token)).statusCode, 200, 'the fresh access token works')
  t.equal((await s.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: body.refresh_token } })).statusCode, 200, 'and its refresh token')
  t.equal((await s.login(u.email, u.password)).statusCode, 401, 'the old password no longer logs in')
  t.equal((await s.login(u.email, 'a brand new secret')).statusCode, 200, 'the new one does')
})

t.test('a wrong old password is 401 invalid_credentials and changes nothing; guesses are throttled like logins', async (t) => {
  const s = await buildTestApp(t, { LOGIN_MAX_FAILURES_PER_EMAIL_IP: '3' })
  const u = await s.register()
  await s.seedBalance(u.user_id, 3)
  const token = await s.tokenFor(u.email, u.password)
  const before = await s.verifications()
  const wrong = await change(s, token, { old_password: 'not the password', new_password: 'whatever123' })
  t.equal(wrong.statusCode, 401)
  t.equal(wrong.json().code, 'invalid_credentials')
  t.equal(await s.verifications(), before + 1, 'one argon2 verification')
  t.equal((await verify(s, token)).statusCode, 200, 'the session lives')
  t.equal((await s.login(u.email, u.password)).statusCode, 200, 'the password is unchanged')
  for (let i = 0; i < 3; i++) await change(s, token, { old_password: `guess ${i}`, new_password: 'whatever123' }, '10.0.0.9')
  const limited = await change(s, token, { old_password: u.password, new_password: 'whatever123' }, '10.0.0.9')
  t.equal(limited.statusCode, 429, 'the fourth try from that address is throttled')
  t.ok(limited.headers['retry-after'])
})

t.test('validation, no token, and a WeChat-only account without a password', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  const token = await s.tokenFor(u.email, u.password)
  for (const body of [{}, { old_password: u.password }, { old_password: u.password, new_password: 'short' }, { old_password: '', new_password: 'long enough' }]) {
    const res = await change(s, token, body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'validation_failed')
  }
  t.equal((await s.app.inject({ method: 'PUT', url: '/api/user/password', payload: { old_password: 'x', new_password: 'long enough' } })).statusCode, 401)
  await s.deps.db.updateTable('users').set({ password_hash: null }).where('id', '=', u.user_id).execute()
  const noPassword = await change(s, token, { old_password: 'anything', new_password: 'long enough' })
  t.equal(noPassword.statusCode, 400)
  t.match(noPassword.json().detail, /no password/)
})
