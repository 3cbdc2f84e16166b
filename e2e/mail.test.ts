// Codes by mail through the real processes and a real SMTP server on loopback: password reset (public, strict per-IP limit at the gateway) and email verification.
import t from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { startFakeSmtp } from '../services/auth/test/fake-smtp.ts'
import { startSystem } from './support/system.ts'
import { assertProblem, registerUser } from './support/client.ts'

t.setTimeout(180_000)

const RESET_LIMIT = 8
const smtp = await startFakeSmtp(t, { user: 'relay', pass: 'relay-secret' })
const system = await startSystem(t, {
  env: { AUTH_RATE_LIMIT_MAX: '1000', RESET_RATE_LIMIT_MAX: String(RESET_LIMIT) },
  procEnv: { auth: { MAIL_URL: smtp.url, MAIL_FROM: 'Chat Platform <no-reply@e2e.test>' } }
})

t.test('a forgotten password: the code by mail, a new password, every old session dead everywhere', async (t) => {
  const u = await registerUser(system, 'forgot')
  await waitFor(() => smtp.to(u.email).length === 1, { what: 'the verification mail sent at registration' })
  const res = await system.request('POST', '/api/auth/password-reset', { body: { email: u.email } })
  t.equal(res.status, 200)
  const unknown = await system.request('POST', '/api/auth/password-reset', { body: { email: 'nobody@e2e.test' } })
  t.same(unknown.body, res.body, 'the same answer for an unknown address')
  await waitFor(() => smtp.to(u.email).length === 2, { what: 'the reset mail' })
  const code = smtp.lastCode(u.email)!
  assertProblem(t, await system.request('POST', '/api/auth/password-reset/confirm', { body: { email: u.email, code: code === '000000' ? '111111' : '000000', new_password: 'recovered-pass' } }), 400, 'code_invalid', 'a wrong code')
  const ok = await system.request('POST', '/api/auth/password-reset/confirm', { body: { email: u.email, code, new_password: 'recovered-pass' } })
  t.equal(ok.status, 200, JSON.stringify(ok.body))
  await waitFor(async () => (await system.request('GET', '/api/sessions', { token: u.token })).status === 401, { what: 'the old token refused' })
  assertProblem(t, await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } }), 401, 'invalid_credentials', 'the old password')
  t.equal((await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: 'recovered-pass' } })).status, 200, 'the new password')
})

t.test('email verification through the gateway', async (t) => {
  const u = await registerUser(system, 'verify')
  await waitFor(() => smtp.to(u.email).length === 1, { what: 'the registration mail' })
  assertProblem(t, await system.request('POST', '/api/auth/email/verify', { body: { code: '123456' } }), 401, 'unauthorized', 'verify without a token')
  const code = smtp.lastCode(u.email)!
  t.equal((await system.request('POST', '/api/auth/email/verify', { token: u.token, body: { code } })).status, 200, 'the code sent at registration verifies')
  t.equal((await system.request('POST', '/api/auth/email/verification', { token: u.token })).status, 200, 'already verified')
  t.equal(smtp.to(u.email).length, 1, 'no new mail for a verified address')
})

t.test('the gateway limits password-reset requests per client IP', async (t) => {
  let limited
  for (let i = 0; i < RESET_LIMIT + 3 && !limited; i++) {
    const res = await system.request('POST', '/api/auth/password-reset', { body: { email: `flood-${i}@e2e.test` } })
    if (res.status === 429) limited = res
  }
  t.ok(limited, 'refused before the limit was passed by much')
  if (limited) assertProblem(t, limited, 429, 'rate_limited', 'reset flood')
  t.equal((await system.request('POST', '/api/auth/email-login', { body: { email: 'x@e2e.test', password: 'whatever1' } })).status, 401, 'logins have their own limit')
})
