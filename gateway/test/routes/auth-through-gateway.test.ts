// The API path end to end: the real auth service behind a real gateway; register → login → verify → profile.
import t from 'tap'
import { startGateway } from '../helper.ts'
import { startServices } from '../services.ts'

// Billing too: verify and profile carry the balance (tokens), which auth asks billing for.
const urls = await startServices(t, ['auth', 'billing'])
const gw = await startGateway(t, { AUTH_URL: urls.auth, BILLING_URL: urls.billing })

const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(gw.url + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  return { res, body: await res.json() }
}

t.test('register → email-login → verify → profile, all through the gateway', async (t) => {
  const email = `gw-${Date.now()}@example.com`
  const registered = await call('POST', '/api/auth/register', { email: `  ${email.toUpperCase()} `, password: 'correct horse battery', nickname: 'Ada' }, { 'x-request-id': 'flow-1' })
  t.equal(registered.res.status, 200)
  t.equal(registered.res.headers.get('x-request-id'), 'flow-1', 'the request id comes back from the service hop')
  t.equal(registered.body.message, '注册成功')
  t.ok(Number.isInteger(registered.body.user_id))

  const login = await call('POST', '/api/auth/email-login', { email, password: 'correct horse battery' })
  t.equal(login.res.status, 200)
  t.equal(login.body.token_type, 'bearer')
  const token = login.body.access_token as string

  const verify = await call('GET', '/api/auth/verify', undefined, { authorization: `Bearer ${token}` })
  t.equal(verify.res.status, 200, 'the gateway accepts the token auth issued')
  t.equal(verify.body.user.id, registered.body.user_id)
  t.equal(verify.body.user.email, email)

  const profile = await call('GET', '/api/user/profile', undefined, { authorization: `Bearer ${token}` })
  t.equal(profile.res.status, 200)
  t.equal(profile.body.nickname, 'Ada')

  const updated = await call('PUT', '/api/user/profile', { nickname: 'Grace', id: 999 }, { authorization: `Bearer ${token}` })
  t.equal(updated.res.status, 200)
  t.equal(updated.body.nickname, 'Grace')
  t.equal(updated.body.id, registered.body.user_id, 'the body cannot change who you are')

  const balance = await call('GET', '/api/user/balance', undefined, { authorization: `Bearer ${token}` })
  t.equal(balance.res.status, 200, 'the same token opens billing routes')
  t.ok(Number.isInteger(balance.body.balance))
})

t.test("the service's own errors pass through as they are; the gateway's 401 comes first", async (t) => {
  const wrong = await call('POST', '/api/auth/email-login', { email: 'nobody@example.com', password: 'whatever-long' })
  t.equal(wrong.res.status, 401)
  t.equal(wrong.body.code, 'invalid_credentials')
  t.equal(wrong.body.request_id, wrong.res.headers.get('x-request-id'))

  const invalid = await call('POST', '/api/auth/register', { email: 'not-an-email', password: 'x', nickname: '' })
  t.equal(invalid.res.status, 400)
  t.equal(invalid.body.code, 'validation_failed')

  const noToken = await call('GET', '/api/auth/verify')
  t.equal(noToken.res.status, 401)
  t.equal(noToken.body.code, 'unauthorized')
})

t.test('/readyz checks the upstreams: auth and billing ok, chat (not started) failing', async (t) => {
  const res = await fetch(`${gw.url}/readyz`)
  const body = await res.json()
  t.equal(body.checks.auth, 'ok')
  t.equal(body.checks.billing, 'ok')
  t.equal(body.checks.redis, 'ok')
  t.match(body.checks.chat, /failing/)
  t.equal(res.status, 503)
})
