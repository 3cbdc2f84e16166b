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

const del = (s: TestApp, token: string, body?: object) =>
  s.app.inject({ method: 'DELETE', url: '/api/user/account', headers: bearer(token), payload: body })

t.test('deleting an account: password required; personal data, sessions and codes gone; tokens dead; auth.user.deleted; the email reusable', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  await s.seedBalance(u.user_id, 3)
  const pair = (await s.login(u.email, u.password)).json()
  const other = (await s.login(u.email, u.password)).json()
  t.equal((await verify(s, other.access_token)).statusCode, 200, 'cached before')

  const missing = await del(s, pair.access_token)
  t.equal(missing.statusCode, 400, 'no password')
  const wrong = await del(s, pair.access_token, { password: 'not it at all' })
  t.equal(wrong.statusCode, 401)
  t.equal(wrong.json().code, 'invalid_credentials')
  t.equal((await verify(s, pair.access_token)).statusCode, 200, 'nothing happened')

  const res = await del(s, pair.access_token, { password: u.password })
  t.equal(res.statusCode, 200, res.body)
  t.type(res.json().message, 'string')
  t.equal(await s.deps.db.selectFrom('users').select('id').where('id', '=', u.user_id).executeTakeFirst(), undefined, 'the user row is gone')
  for (const table of ['refresh_families', 'email_codes'] as const) {
    t.equal((await s.deps.db.selectFrom(table).select('user_id').where('user_id', '=', u.user_id).execute()).length, 0, `${table} of the user gone`)
  }
  t.equal((await s.deps.db.selectFrom('email_code_sends').select('id').where('email', '=', u.email).execute()).length, 0, 'the address is not kept either')
  await waitFor(async () => (await verify(s, other.access_token)).statusCode === 401, { what: 'every token refused' })
  t.equal((await verify(s, pair.access_token)).statusCode, 401)
  t.equal((await s.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: other.refresh_token } })).statusCode, 401)
  t.equal((await s.login(u.email, u.password)).statusCode, 401, 'the credentials are gone')

  const events = await s.deps.db.selectFrom('outbox').select(['subject', 'payload']).where('subject', 'like', '%auth.user.deleted').execute()
  t.equal(events.length, 1)
  t.equal((events[0].payload as { user_id: number }).user_id, u.user_id)

  const again = await s.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: u.email, password: 'a whole new account', nickname: 'Again' } })
  t.equal(again.statusCode, 200, 'the address registers again')
  t.not(again.json().user_id, u.user_id, 'as a new account')
})

t.test('a WeChat-only account (no password) is deleted only within 10 minutes of a login', async (t) => {
  const { startFakeWechat, FAKE_APPID, FAKE_SECRET } = await import('../fake-wechat.ts')
  const wx = await startFakeWechat(t)
  const s = await buildTestApp(t, { WECHAT_APPID: FAKE_APPID, WECHAT_SECRET: FAKE_SECRET, WECHAT_API_BASE: wx.url })
  const login = async () => (await s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code: wx.code({ openid: 'oDeleteMe', unionid: 'uDeleteMe' }) } })).json()
  const first = await login()
  const userId = Number(decodeJwt(first.access_token).payload.sub)
  // The session started 11 minutes ago; a refresh gives a fresh token, but no fresh login.
  await s.deps.db.updateTable('refresh_families').set({ created_at: new Date(Date.now() - 11 * 60_000) } as never).where('user_id', '=', userId).execute()
  const refreshed = (await s.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: first.refresh_token } })).json()
  const old = await del(s, refreshed.access_token)
  t.equal(old.statusCode, 403, 'a refreshed token is not a recent login')
  t.equal(old.json().code, 'forbidden')
  const fresh = await login()
  t.equal(Number(decodeJwt(fresh.access_token).payload.sub), userId, 'the same user logs in again')
  const res = await s.app.inject({ method: 'DELETE', url: '/api/user/account', headers: { ...bearer(fresh.access_token), 'content-type': 'application/json' } })
  t.equal(res.statusCode, 200, res.body)
  t.equal((await s.deps.db.selectFrom('wechat_identities').select('id').where('user_id', '=', userId).execute()).length, 0, 'the WeChat identity is gone')
  const next = await login()
  t.not(Number(decodeJwt(next.access_token).payload.sub), userId, 'the same WeChat user comes back as a new account')
})
