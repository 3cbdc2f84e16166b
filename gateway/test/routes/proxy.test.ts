// Proxy mechanics through a real gateway: the routing table, headers on every hop, the body limit, 404s and problem answers.
import t from 'tap'
import { signTestToken } from '@chat-platform/platform/testing'
import { startGateway, startUpstream, bearer } from '../helper.ts'

const token = signTestToken(7)
const auth = await startUpstream(t, { name: 'auth' })
const chat = await startUpstream(t, { name: 'chat' })
const billing = await startUpstream(t, { name: 'billing' })
const gw = await startGateway(t, { AUTH_URL: auth.url, CHAT_URL: chat.url, BILLING_URL: billing.url })

const call = async (method: string, path: string, init: { headers?: Record<string, string>, body?: string } = {}) => {
  const res = await fetch(gw.url + path, { method, headers: { ...bearer(token), ...init.headers }, body: init.body })
  const text = await res.text()
  return { res, text, json: () => JSON.parse(text) }
}

t.test('each route of DESIGN §2 reaches its service, path and query unchanged', async (t) => {
  const table: [string, string, string][] = [
    ['POST', '/api/auth/register', 'auth'],
    ['POST', '/api/auth/email-login', 'auth'],
    ['POST', '/api/auth/wechat-login', 'auth'],
    ['GET', '/api/auth/verify', 'auth'],
    ['GET', '/api/user/profile', 'auth'],
    ['PUT', '/api/user/profile', 'auth'],
    ['GET', '/api/user/balance', 'billing'],
    ['POST', '/api/sessions', 'chat'],
    ['GET', '/api/sessions?limit=5&before_id=9', 'chat'],
    ['DELETE', '/api/sessions/12', 'chat'],
    ['POST', '/api/sessions/12/messages', 'chat'],
    ['GET', '/api/sessions/12/messages', 'chat'],
    ['POST', '/api/billing/recharge', 'billing'],
    ['GET', '/api/billing/transactions', 'billing']
  ]
  for (const [method, path, service] of table) {
    const hasBody = method === 'POST' || method === 'PUT'
    const { res, json } = await call(method, path, hasBody ? { headers: { 'content-type': 'application/json' }, body: '{"a": 1}' } : {})
    t.equal(res.status, 200, `${method} ${path}`)
    const echo = json()
    t.equal(echo.upstream, service, `${method} ${path} → ${service}`)
    t.equal(echo.method, method)
    t.equal(echo.url, path)
    if (hasBody) t.equal(echo.body, '{"a": 1}', 'the body is forwarded byte for byte')
  }
})

t.test('headers: Authorization unchanged, X-Request-Id on every hop and answer, client identity headers dropped', async (t) => {
  const { res, json } = await call('GET', '/api/sessions', {
    headers: { 'x-request-id': 'req-abc.123', 'x-user-id': '1', 'x-user-role': 'admin', 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6', 'idempotency-key': 'k1' }
  })
  const seen = json().headers
  t.equal(seen.authorization, `Bearer ${token}`)
  t.equal(seen['x-request-id'], 'req-abc.123')
  t.equal(res.headers.get('x-request-id'), 'req-abc.123')
  t.equal(seen['idempotency-key'], 'k1')
  t.notOk(seen['x-user-id'])
  t.notOk(seen['x-user-role'])
  t.notOk(seen.forwarded)
  t.notOk(seen['x-real-ip'])
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the client address the gateway saw (TRUST_PROXY off)')

  const generated = await call('GET', '/api/user/balance')
  const id = generated.res.headers.get('x-request-id')
  t.match(id, /^[0-9a-f-]{36}$/, 'a request id is generated when none is given')
  t.equal(generated.json().headers['x-request-id'], id)

  const bad = await call('GET', '/api/user/balance', { headers: { 'x-request-id': 'bad id with spaces' } })
  t.not(bad.res.headers.get('x-request-id'), 'bad id with spaces', 'an unsafe request id is replaced')
})

t.test('unknown routes, /internal and path tricks are 404 problem+json made by the gateway', async (t) => {
  const before = auth.seen.length + chat.seen.length + billing.seen.length
  for (const path of ['/internal/balances/1', '/api/nope', '/api/user/other', '/', '/internal/usage?since=2020-01-01T00:00:00Z']) {
    const { res, json } = await call('GET', path)
    t.equal(res.status, 404, path)
    t.match(res.headers.get('content-type'), /^application\/problem\+json/)
    const body = json()
    t.equal(body.code, 'not_found')
    t.equal(body.request_id, res.headers.get('x-request-id'))
  }
  const traversal = await call('GET', '/api/sessions/..%2F..%2Finternal%2Fusage')
  t.not(traversal.res.status, 200, 'no way out of the mounted prefix')
  t.notOk([...chat.seen].some((s) => s.url.includes('internal')), 'nothing internal reached a service')
  t.equal(auth.seen.length + chat.seen.length + billing.seen.length, before)
})

t.test('a body over 1 MiB is 413 payload_too_large and never reaches the service', async (t) => {
  const before = chat.seen.length
  const big = JSON.stringify({ content: 'x'.repeat(1024 * 1024 + 10) })
  const { res, json } = await call('POST', '/api/sessions/1/messages', { headers: { 'content-type': 'application/json' }, body: big })
  t.equal(res.status, 413)
  t.equal(json().code, 'payload_too_large')
  t.equal(chat.seen.length, before)
  const justUnder = await call('POST', '/api/sessions/1/messages', { headers: { 'content-type': 'application/json' }, body: 'x'.repeat(1024 * 1024 - 1) })
  t.equal(justUnder.res.status, 200, 'up to 1 MiB passes')
})

t.test('an upstream answer passes through untouched (status, body, headers)', async (t) => {
  const up = await startUpstream(t, {
    name: 'auth2',
    handler: (_req, res) => {
      res.writeHead(409, { 'content-type': 'application/problem+json', 'x-custom': 'yes' })
      res.end(JSON.stringify({ code: 'email_taken', status: 409 }))
    }
  })
  const g = await startGateway(t, { AUTH_URL: up.url })
  const res = await fetch(`${g.url}/api/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(res.status, 409)
  t.equal(res.headers.get('x-custom'), 'yes')
  t.same(await res.json(), { code: 'email_taken', status: 409 })
})

t.test('metrics count proxied requests per route and upstream', async (t) => {
  const res = await fetch(`${gw.url}/metrics`)
  const text = await res.text()
  t.match(text, /gateway_upstream_request_duration_seconds_count\{[^}]*upstream="chat"[^}]*route="GET \/api\/sessions\/\{session_id\}\/messages"[^}]*\} 1/)
  t.match(text, /gateway_upstream_request_duration_seconds_bucket\{[^}]*upstream="billing"/)
  t.match(text, /http_request_duration_seconds_count/)
})

t.test('metrics label a route without parameters by its template per method and status, and anything else "other"', async (t) => {
  const up = await startUpstream(t, {
    name: 'billing2',
    handler: (req, res) => {
      res.writeHead(req.url === '/api/user/balance' && req.method !== 'PUT' ? 200 : 404, { 'content-type': 'application/json' })
      res.end('{}')
    }
  })
  const g = await startGateway(t, { BILLING_URL: up.url })
  const send = async (method: string, path: string) => (await fetch(g.url + path, { method, headers: bearer(token) })).status
  t.same([await send('GET', '/api/user/balance'), await send('GET', '/api/user/balance'), await send('HEAD', '/api/user/balance'), await send('PUT', '/api/user/balance'),
    await send('GET', '/api/billing/transactions?limit=2'), await send('GET', '/api/billing/nothing-here')], [200, 200, 200, 404, 404, 404])
  const text = await (await fetch(`${g.url}/metrics`)).text()
  const count = (route: string, method: string, status: number) => Number(new RegExp(`gateway_upstream_request_duration_seconds_count\\{[^}]*upstream="billing"[^}]*route="${route}",method="${method}",status="${status}"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? 0)
  t.equal(count('GET /api/user/balance', 'GET', 200), 2, 'two GETs of the balance')
  t.equal(count('GET /api/user/balance', 'HEAD', 200), 1, 'HEAD is labelled with the GET template and its own method')
  t.equal(count('other', 'PUT', 404), 1, 'a method the route table does not list is "other"')
  t.equal(count('GET /api/billing/transactions', 'GET', 404), 1, 'a wildcard route is labelled from its path, without the query')
  t.equal(count('other', 'GET', 404), 1, 'an unknown path under a wildcard is "other"')
})
