// The routes of DESIGN §6.2/§6.4 at the edge: /api/admin/* needs role "admin" (403 otherwise, never proxied), WeChat
// Pay's callback needs no token and has no per-address limit, and the new chat and billing routes reach their service.
import t from 'tap'
import { signTestToken } from '@chat-platform/platform/testing'
import { isLlmRoute, routeLabel } from '../../src/routing.ts'
import { bearer, startGateway, startUpstream } from '../helper.ts'

const auth = await startUpstream(t, { name: 'auth' })
const chat = await startUpstream(t, { name: 'chat' })
const billing = await startUpstream(t, { name: 'billing' })
// Low limits, so "no per-address limit" on the callback is visible well within one window.
const gw = await startGateway(t, { AUTH_URL: auth.url, CHAT_URL: chat.url, BILLING_URL: billing.url, RATE_LIMIT_MAX: '30', AUTH_RATE_LIMIT_MAX: '2' })

const admin = bearer(signTestToken(1, { role: 'admin' }))
const seenBy = () => ({ auth: auth.seen.length, chat: chat.seen.length, billing: billing.seen.length })

const ADMIN_ROUTES: [string, string, string][] = [
  ['GET', '/api/admin/users?query=bob', 'auth'],
  ['GET', '/api/admin/users/7/transactions', 'billing'],
  ['POST', '/api/admin/adjustments', 'billing'],
  ['POST', '/api/admin/redemption-codes', 'billing'],
  ['GET', '/api/admin/orders?status=flagged', 'billing'],
  ['GET', '/api/admin/usage?group_by=day', 'billing']
]

t.test('admin routes: an admin token reaches the owning service, path and query unchanged', async (t) => {
  for (const [method, path, upstream] of ADMIN_ROUTES) {
    const res = await fetch(gw.url + path, { method, headers: { ...admin, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) }, body: method === 'POST' ? '{}' : undefined })
    t.equal(res.status, 200, `${method} ${path}`)
    const body = await res.json()
    t.equal(body.upstream, upstream, `${method} ${path} goes to ${upstream}`)
    t.equal(body.url, path)
  }
})

t.test('admin routes: a valid token without the role is 403 forbidden and never proxied; no token is 401', async (t) => {
  // A user token, and tokens that only look like an admin's: the role is read from the verified claims alone.
  const user = bearer(signTestToken(2))
  const otherRole = bearer(signTestToken(3, { role: 'Admin' }))
  const before = seenBy()
  for (const [method, path] of ADMIN_ROUTES) {
    for (const [who, headers] of [['user', user], ['role "Admin"', otherRole]] as const) {
      const res = await fetch(gw.url + path, { method, headers: { ...headers, 'x-user-role': 'admin' } })
      t.equal(res.status, 403, `${who}: ${method} ${path}`)
      t.equal((await res.json()).code, 'forbidden')
    }
    const anonymous = await fetch(gw.url + path, { method })
    t.equal(anonymous.status, 401, `no token: ${method} ${path}`)
  }
  t.same(seenBy(), before, 'nothing reached a service')
})

t.test('admin routes: spelled another way they are refused, never routed around the role check', async (t) => {
  const user = bearer(signTestToken(2))
  const before = seenBy()
  for (const path of ['/api/admin/./adjustments', '/api/admin//adjustments', '/api/billing/../admin/adjustments', '/api/%61dmin/adjustments', '/api/admin/%2e/adjustments']) {
    const res = await fetch(gw.url + path, { method: 'POST', headers: user })
    t.not(res.status, 200, path)
    t.ok(res.status === 404 || res.status === 400 || res.status === 403, `${path}: ${res.status}`)
  }
  t.same(seenBy(), before, 'nothing reached a service')
})

t.test('the WeChat Pay callback needs no token, is not limited per address, and reaches billing byte for byte', async (t) => {
  const raw = '{"id":"EV-2018022511223320873","resource":{"ciphertext":"q=+/", "nonce":"x"}}  '
  const headers = { 'content-type': 'application/json', 'wechatpay-signature': 'c2ln', 'wechatpay-timestamp': '1700000000', 'wechatpay-nonce': 'n', 'wechatpay-serial': 'PUB_KEY_ID_1' }
  const before = billing.seen.length
  for (let i = 0; i < 40; i++) {
    const res = await fetch(`${gw.url}/api/billing/wechatpay/notify`, { method: 'POST', headers, body: raw })
    t.equal(res.status, 200, `callback ${i + 1} of 40 passes (the api limit is 30, the public one 2)`)
  }
  t.equal(billing.seen.length, before + 40)
  const last = billing.seen.at(-1)!
  t.equal(last.url, '/api/billing/wechatpay/notify')
  t.equal(last.body, raw, 'the raw body is forwarded unchanged (the signature covers its bytes)')
  t.equal(last.headers['wechatpay-signature'], 'c2ln', 'the signature headers are forwarded')
  t.notOk(last.headers.authorization)
  // Only POST is the callback; anything else on that path is the authenticated zone's.
  t.equal((await fetch(`${gw.url}/api/billing/wechatpay/notify`)).status, 401)
})

t.test('the new user routes reach their service with a token', async (t) => {
  const user = bearer(signTestToken(4))
  for (const [method, path, upstream] of [
    ['GET', '/api/models', 'chat'], ['PATCH', '/api/sessions/3', 'chat'], ['POST', '/api/sessions/3/messages/9/regenerate', 'chat'],
    ['GET', '/api/billing/packages', 'billing'], ['POST', '/api/billing/orders', 'billing'], ['GET', '/api/billing/orders/AB12CD34EF', 'billing'],
    ['POST', '/api/billing/redeem', 'billing'], ['GET', '/api/billing/usage?group_by=model', 'billing']
  ]) {
    const res = await fetch(gw.url + path, { method, headers: { ...user, ...(method === 'GET' ? {} : { 'content-type': 'application/json' }) }, body: method === 'GET' ? undefined : '{}' })
    t.equal(res.status, 200, `${method} ${path}`)
    t.equal((await res.json()).upstream, upstream, `${method} ${path} goes to ${upstream}`)
    t.equal((await fetch(gw.url + path, { method })).status, 401, `${method} ${path} needs a token`)
  }
})

t.test('regenerate waits on the model like a send (the long timeout); metrics name every new route', async (t) => {
  t.ok(isLlmRoute('POST', '/api/sessions/3/messages/9/regenerate'))
  t.ok(isLlmRoute('POST', '/api/sessions/3/messages'))
  t.notOk(isLlmRoute('POST', '/api/sessions/3/messages/9'))
  t.notOk(isLlmRoute('GET', '/api/sessions/3/messages/9/regenerate'))
  t.equal(routeLabel('POST', '/api/sessions/3/messages/9/regenerate'), 'POST /api/sessions/{session_id}/messages/{message_id}/regenerate')
  t.equal(routeLabel('GET', '/api/billing/orders/AB12CD34EF'), 'GET /api/billing/orders/{order_no}')
  t.equal(routeLabel('GET', '/api/admin/users/7/transactions'), 'GET /api/admin/users/{user_id}/transactions')
  t.equal(routeLabel('POST', '/api/billing/wechatpay/notify'), 'POST /api/billing/wechatpay/notify')
  t.equal(routeLabel('GET', '/api/admin/nothing'), 'other')
})
