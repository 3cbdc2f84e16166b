// Path spelling at a real gateway: non-canonical spellings are refused before any zone (never proxied, never rate-limit bypasses); canonical ones are forwarded byte for byte.
import t from 'tap'
import { request as httpRequest } from 'node:http'
import { signTestToken } from '@chat-platform/platform/testing'
import { startGateway, startUpstream, bearer } from '../helper.ts'

interface RawResponse { status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** One request with the target exactly as given (fetch would normalise it on the client). */
function raw (base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<RawResponse> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

const REGISTER = '{"email":"a@b.c","password":"password1","nickname":"n"}'

/** Spellings of POST /api/auth/register that some part of the stack could read as that path. */
const BYPASSES = [
  '/api/auth/./register', '/api/auth/%2e/register', '/api/auth/%2E/register', '/api/auth/x/../register', '/api/auth/x/%2e%2e/register',
  '/api/auth/x/%2E%2E/register', '/api/auth/x/.%2e/register', '/api/auth/x/%2e./register', '/api//auth/register', '/api/auth//register',
  '/api/auth/register/', '/api/auth/register/.', '/api/auth%2Fregister', '/api/auth/x%2F..%2Fregister', '/api/auth/x%2f%2e%2e%2fregister',
  '/api/auth/%252e/register', '/api/auth/x/%252e%252e/register', '/api/auth/%72egister', '/api/auth/x/..\\register', '/api/auth\\register',
  '/api/auth/x/%5C..%5Cregister', '/api/auth/register;x=1', '/api/auth/.;/register', '/api/auth/register%3Bx', '/api/auth/register#x',
  '/api/auth/register?x=1/', '//api/auth/register', '/./api/auth/register', '/api/sessions/../auth/register'
]

t.test('every spelling of register is refused while the plain path is at its limit, and the service never sees one', async (t) => {
  const auth = await startUpstream(t, { name: 'auth' })
  const chat = await startUpstream(t, { name: 'chat' })
  const gw = await startGateway(t, { AUTH_URL: auth.url, CHAT_URL: chat.url, AUTH_RATE_LIMIT_MAX: '2', RATE_LIMIT_MAX: '1000' })
  const token = bearer(signTestToken(41))
  t.equal((await raw(gw.url, 'POST', '/api/auth/register', {}, REGISTER)).status, 200)
  t.equal((await raw(gw.url, 'POST', '/api/auth/register', {}, REGISTER)).status, 200)
  t.equal((await raw(gw.url, 'POST', '/api/auth/register', {}, REGISTER)).status, 429, 'the public limit is reached')
  const before = auth.seen.length + chat.seen.length
  let through = 0
  for (const path of BYPASSES) {
    for (const headers of [token, {}]) {
      const res = await raw(gw.url, 'POST', path, headers, REGISTER)
      // A query-string slash is not part of the path: that one is the plain route, and limited as such.
      if (path.startsWith('/api/auth/register?')) {
        t.equal(res.status, 429, `${path} is the public route and counted as such`)
        continue
      }
      if (res.status !== 404) through++
      t.equal(res.status, 404, `${path} (${headers === token ? 'with' : 'without'} a token) is 404`)
      t.match(res.headers['content-type'], /^application\/problem\+json/)
      const body = JSON.parse(res.body)
      t.equal(body.code, 'not_found')
      t.equal(body.request_id, res.headers['x-request-id'], 'the problem carries the request id')
      t.notOk(res.headers['ratelimit-limit'], 'refused before any rate limit counted it')
    }
  }
  t.equal(through, 0, 'no spelling got anything but a 404')
  t.equal(auth.seen.length + chat.seen.length, before, 'no service saw any of them')
  t.equal((await raw(gw.url, 'POST', '/api/auth/register', {}, REGISTER)).status, 429, 'the plain path is still limited')
})

t.test('the admin prefix and the authenticated zone are decided on the canonical path too', async (t) => {
  const auth = await startUpstream(t, { name: 'auth' })
  const chat = await startUpstream(t, { name: 'chat' })
  const billing = await startUpstream(t, { name: 'billing' })
  const gw = await startGateway(t, { AUTH_URL: auth.url, CHAT_URL: chat.url, BILLING_URL: billing.url })
  const token = bearer(signTestToken(42, { role: 'admin' }))
  for (const path of ['/api/./admin/users', '/api/admin//users', '/api/%61dmin/users', '/api/admin/../billing/recharge', '/api/sessions/%2e%2e/admin/x', '/api/billing/x/../../admin/y', '/api/user/balance/', '/api/user/balance/.', '/api/user/profile/../balance']) {
    const res = await raw(gw.url, 'GET', path, token)
    t.equal(res.status, 404, path)
  }
  t.equal(auth.seen.length + chat.seen.length + billing.seen.length, 0, 'nothing was proxied')
  // The canonical spelling is a route (auth's user search), so the 404s above are the spellings' alone.
  t.equal((await raw(gw.url, 'GET', '/api/admin/users', token)).status, 200, 'the canonical path is routed')
  t.equal(auth.seen.at(-1)?.url, '/api/admin/users')
})

t.test('a canonical path and its query string reach the service exactly as sent', async (t) => {
  const chat = await startUpstream(t, { name: 'chat' })
  const gw = await startGateway(t, { CHAT_URL: chat.url })
  const token = bearer(signTestToken(43))
  for (const path of [
    '/api/sessions?limit=5&before_id=3',
    '/api/sessions/12/messages?x=..%2F..%2F&y=%2e&a=1&a=2&flag&z=%zz;q#',
    '/api/sessions/%C3%A9/messages', '/api/sessions/%c3%a9',
    "/api/sessions/a.b/x:y@z!$&'()*+,=~_-",
    '/api/sessions/.x./messages'
  ]) {
    const res = await raw(gw.url, 'GET', path, token)
    t.equal(res.status, 200, path)
    t.equal(chat.seen.at(-1)?.url, path, `${path} forwarded unchanged`)
  }
})

t.test('a malformed percent-encoding is a 400 validation_failed problem, never proxied', async (t) => {
  const chat = await startUpstream(t, { name: 'chat' })
  const auth = await startUpstream(t, { name: 'auth' })
  const gw = await startGateway(t, { CHAT_URL: chat.url, AUTH_URL: auth.url })
  for (const [method, path] of [['GET', '/api/sessions/%E0%A4%A'], ['GET', '/api/%zz'], ['POST', '/api/auth/%zzregister'], ['GET', '/api/sessions/%E0%A4'], ['GET', '/%'], ['GET', '/api/sessions/%FF']]) {
    const res = await raw(gw.url, method, path, bearer(signTestToken(44)))
    t.equal(res.status, 400, path)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${path}: problem+json`)
    const body = JSON.parse(res.body)
    t.match(body, { code: 'validation_failed', status: 400, type: 'https://chat-platform.dev/problems/validation-failed' }, path)
    t.ok(body.request_id && body.request_id === res.headers['x-request-id'], `${path}: request id in the body and the header`)
  }
  t.equal(chat.seen.length + auth.seen.length, 0)
})
