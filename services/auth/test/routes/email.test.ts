// Codes by mail through a real SMTP server on loopback: password reset, email verification, their limits, the development mailbox, 503 without mail in production,
// a reset refused by a full argon2 queue.
import t from 'tap'
import { waitFor, testKeys } from '@chat-platform/platform/testing'
import { buildTestApp, bearer, type TestApp } from '../helper.ts'
import { startFakeSmtp } from '../fake-smtp.ts'
import { passwordHashing } from '../../src/passwords.ts'
import { holdHashing } from '../hold-hashing.ts'

const post = (s: TestApp, url: string, payload?: object, token?: string) =>
  s.app.inject({ method: 'POST', url, payload, headers: token ? bearer(token) : {} })

t.test('password reset: the code arrives by SMTP (with credentials), resets the password once, and ends every session', async (t) => {
  const smtp = await startFakeSmtp(t, { user: 'mailer', pass: 'p@ss word' })
  const s = await buildTestApp(t, { MAIL_URL: smtp.url, MAIL_FROM: 'Chat <no-reply@example.com>' })
  const u = await s.register()
  await s.seedBalance(u.user_id, 1)
  const session = (await s.login(u.email, u.password)).json()
  await waitFor(() => smtp.to(u.email).length === 1, { what: 'the verification mail sent at registration' })

  const res = await post(s, '/api/auth/password-reset', { email: `  ${u.email.toUpperCase()} ` })
  t.equal(res.statusCode, 200)
  const unknown = await post(s, '/api/auth/password-reset', { email: 'nobody-here@example.com' })
  t.equal(unknown.statusCode, 200)
  t.same(unknown.json(), res.json(), 'the same answer for an unknown address')
  await waitFor(() => smtp.to(u.email).length === 2, { what: 'the reset mail' })
  const mail = smtp.to(u.email)[1]
  t.equal(mail.user, 'mailer', 'sent with the credentials of MAIL_URL')
  t.equal(mail.from, 'no-reply@example.com', 'from MAIL_FROM')
  t.equal(smtp.to('nobody-here@example.com').length, 0, 'nothing sent to an unknown address')
  const code = smtp.lastCode(u.email)!
  t.match(code, /^[0-9]{6}$/)

  const wrong = await post(s, '/api/auth/password-reset/confirm', { email: u.email, code: code === '000000' ? '111111' : '000000', new_password: 'brand-new-pass' })
  t.equal(wrong.statusCode, 400)
  t.equal(wrong.json().code, 'code_invalid')
  const ok = await post(s, '/api/auth/password-reset/confirm', { email: u.email, code, new_password: 'brand-new-pass' })
  t.equal(ok.statusCode, 200, ok.body)
  await waitFor(async () => (await s.app.inject({ url: '/api/auth/verify', headers: bearer(session.access_token) })).statusCode === 401, { what: 'the old session refused' })
  t.equal((await post(s, '/api/auth/refresh', { refresh_token: session.refresh_token })).statusCode, 401)
  t.equal((await s.login(u.email, u.password)).statusCode, 401, 'the old password is gone')
  t.equal((await s.login(u.email, 'brand-new-pass')).statusCode, 200, 'the new one logs in')
  t.equal((await post(s, '/api/auth/password-reset/confirm', { email: u.email, code, new_password: 'another-pass-1' })).statusCode, 400, 'a code works once')
  const row = await s.deps.db.selectFrom('users').select('email_verified_at').where('id', '=', u.user_id).executeTakeFirstOrThrow()
  t.ok(row.email_verified_at, 'a reset proves the address too')
  t.notOk(s.logs().includes(code), 'the code is never logged')
})

t.test('codes: 5 tries, 10 minutes, a new code replaces the old, at most 5 mails per address per hour', async (t) => {
  const smtp = await startFakeSmtp(t)
  const s = await buildTestApp(t, { MAIL_URL: smtp.url })
  const u = await s.register()
  await waitFor(() => smtp.to(u.email).length === 1, { what: 'the registration mail' })
  await post(s, '/api/auth/password-reset', { email: u.email })
  await waitFor(() => smtp.to(u.email).length === 2, { what: 'reset mail 1' })
  const first = smtp.lastCode(u.email)!
  const other = first === '123456' ? '654321' : '123456'
  for (let i = 0; i < 5; i++) t.equal((await post(s, '/api/auth/password-reset/confirm', { email: u.email, code: other, new_password: 'brand-new-pass' })).statusCode, 400)
  t.equal((await post(s, '/api/auth/password-reset/confirm', { email: u.email, code: first, new_password: 'brand-new-pass' })).statusCode, 400, 'after 5 wrong tries the right code is dead')

  await post(s, '/api/auth/password-reset', { email: u.email })
  await waitFor(() => smtp.to(u.email).length === 3, { what: 'reset mail 2' })
  const second = smtp.lastCode(u.email)!
  await post(s, '/api/auth/password-reset', { email: u.email })
  await waitFor(() => smtp.to(u.email).length === 4, { what: 'reset mail 3' })
  const third = smtp.lastCode(u.email)!
  if (second !== third) t.equal((await post(s, '/api/auth/password-reset/confirm', { email: u.email, code: second, new_password: 'brand-new-pass' })).statusCode, 400, 'a new code replaces the old')
  await s.deps.db.updateTable('email_codes').set({ expires_at: new Date(Date.now() - 1000) }).execute()
  t.equal((await post(s, '/api/auth/password-reset/confirm', { email: u.email, code: third, new_password: 'brand-new-pass' })).statusCode, 400, 'an expired code')

  // Registration + 3 resets = 4 mails this hour: one more goes out, then none (the answer stays the same).
  t.equal((await post(s, '/api/auth/password-reset', { email: u.email })).statusCode, 200)
  await waitFor(() => smtp.to(u.email).length === 5, { what: 'the fifth mail' })
  const over = await post(s, '/api/auth/password-reset', { email: u.email })
  t.equal(over.statusCode, 200, 'over the limit: the same answer')
  const token = await s.tokenFor(u.email, u.password)
  const limited = await post(s, '/api/auth/email/verification', undefined, token)
  t.equal(limited.statusCode, 429, 'and a verification request says so')
  t.ok(Number(limited.headers['retry-after']) > 0)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(smtp.to(u.email).length, 5, 'no sixth mail')

  for (const body of [{ email: u.email, code: '12345', new_password: 'brand-new-pass' }, { email: u.email, code: 'abcdef', new_password: 'brand-new-pass' }, { email: u.email, code: '123456', new_password: 'short' }]) {
    t.equal((await post(s, '/api/auth/password-reset/confirm', body)).statusCode, 400, JSON.stringify(body))
  }
  t.equal((await post(s, '/api/auth/password-reset/confirm', { email: 'nobody@example.com', code: '123456', new_password: 'brand-new-pass' })).json().code, 'code_invalid', 'an unknown address: the same error')
})

t.test('email verification: request a code, verify it; bearer required; verified stays verified', async (t) => {
  const smtp = await startFakeSmtp(t)
  const s = await buildTestApp(t, { MAIL_URL: smtp.url })
  const u = await s.register()
  const token = await s.tokenFor(u.email, u.password)
  await waitFor(() => smtp.to(u.email).length === 1, { what: 'the registration mail' })
  const res = await post(s, '/api/auth/email/verification', undefined, token)
  t.equal(res.statusCode, 200)
  t.equal(smtp.to(u.email).length, 2, 'sent before the answer')
  const code = smtp.lastCode(u.email)!
  t.equal((await post(s, '/api/auth/email/verify', { code: code === '000000' ? '999999' : '000000' }, token)).json().code, 'code_invalid')
  t.equal((await post(s, '/api/auth/email/verify', { code }, token)).statusCode, 200)
  const row = await s.deps.db.selectFrom('users').select('email_verified_at').where('id', '=', u.user_id).executeTakeFirstOrThrow()
  t.ok(row.email_verified_at)
  t.equal((await post(s, '/api/auth/email/verification', undefined, token)).statusCode, 200, 'already verified: nothing sent')
  t.equal(smtp.to(u.email).length, 2)
  t.equal((await post(s, '/api/auth/email/verify', { code: '123456' })).statusCode, 401)
  t.equal((await post(s, '/api/auth/email/verification')).statusCode, 401)
  t.equal((await post(s, '/api/auth/email/verify', { code: 'x' }, token)).statusCode, 400)
})

t.test('no MAIL_URL outside production: the development mailbox (internal route) has the mails', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  await post(s, '/api/auth/password-reset', { email: u.email })
  let mails: { to: string, subject: string, text: string }[] = []
  await waitFor(async () => {
    mails = (await s.app.inject({ url: `/internal/dev-mailbox?to=${encodeURIComponent(u.email.toUpperCase())}` })).json()
    return mails.length === 2
  }, { what: 'two mails in the development mailbox' })
  t.ok(mails.every((m) => m.to === u.email))
  t.match(mails[0].text, /[0-9]{6}/)
  t.match(s.logs(), /development mailbox/)
})

t.test('no MAIL_URL in production: the mail routes answer 503, registration still works, no dev mailbox', async (t) => {
  const s = await buildTestApp(t, { NODE_ENV: 'production', INTERNAL_TOKEN: 'internal-token-for-tests', JWT_PRIVATE_KEY: testKeys.privateKey })
  const u = await s.register()
  const reset = await post(s, '/api/auth/password-reset', { email: u.email })
  t.equal(reset.statusCode, 503)
  t.equal(reset.json().code, 'service_unavailable')
  const token = await s.tokenFor(u.email, u.password)
  t.equal((await post(s, '/api/auth/email/verification', undefined, token)).statusCode, 503)
  t.equal((await s.app.inject({ url: '/internal/dev-mailbox', headers: { 'x-internal-token': 'internal-token-for-tests' } })).statusCode, 404)
})

t.test('SIGNUP_BONUS_ON=verified_email: auth.user.registered waits for the verified address, and is written once', async (t) => {
  const smtp = await startFakeSmtp(t)
  const s = await buildTestApp(t, { MAIL_URL: smtp.url, SIGNUP_BONUS_ON: 'verified_email' })
  const registered = async (userId: number) => (await s.deps.db.selectFrom('outbox').select('payload').where('subject', 'like', '%auth.user.registered').execute())
    .filter((r) => (r.payload as { user_id: number }).user_id === userId).length
  const u = await s.register()
  t.equal(await registered(u.user_id), 0, 'nothing at registration')
  const token = await s.tokenFor(u.email, u.password)
  await waitFor(() => smtp.to(u.email).length === 1, { what: 'the registration mail' })
  t.equal((await post(s, '/api/auth/email/verify', { code: smtp.lastCode(u.email) }, token)).statusCode, 200)
  t.equal(await registered(u.user_id), 1, 'published when verified')
  t.equal((await post(s, '/api/auth/email/verify', { code: '123456' }, token)).statusCode, 200, 'verified again: nothing to do')
  t.equal(await registered(u.user_id), 1, 'still once')

  // A password reset proves the address as well.
  const v = await s.register()
  await waitFor(() => smtp.to(v.email).length === 1, { what: 'the second registration mail' })
  await post(s, '/api/auth/password-reset', { email: v.email })
  await waitFor(() => smtp.to(v.email).length === 2, { what: 'the reset mail' })
  t.equal((await post(s, '/api/auth/password-reset/confirm', { email: v.email, code: smtp.lastCode(v.email), new_password: 'brand-new-pass' })).statusCode, 200)
  t.equal(await registered(v.user_id), 1, 'published when a reset verified the address')
})

t.test('a reset refused by a full argon2 queue (503) leaves its code unused and the password as it was', async (t) => {
  const smtp = await startFakeSmtp(t)
  const s = await buildTestApp(t, { MAIL_URL: smtp.url })
  const u = await s.register()
  t.equal((await post(s, '/api/auth/password-reset', { email: u.email })).statusCode, 200)
  await waitFor(() => smtp.to(u.email).length === 2, { what: 'the reset mail' })
  const code = smtp.lastCode(u.email)!

  const held = holdHashing(t, { tasks: passwordHashing.limit, maxWaiting: 0 })
  const refused = await post(s, '/api/auth/password-reset/confirm', { email: u.email, code, new_password: 'brand-new-pass' })
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  await held.release()

  t.equal((await s.login(u.email, u.password)).statusCode, 200, 'the password did not change')
  const ok = await post(s, '/api/auth/password-reset/confirm', { email: u.email, code, new_password: 'brand-new-pass' })
  t.equal(ok.statusCode, 200, 'the same code still works')
  t.equal((await s.login(u.email, 'brand-new-pass')).statusCode, 200)
})
