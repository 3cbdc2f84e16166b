// JWT checks at the gateway: only a valid EdDSA token from our issuer passes; every attack is a 401 the service never sees.
import t from 'tap'
import { signTestToken, testKeys } from '@chat-platform/platform/testing'
import { startGateway, startUpstream, craftToken, claimsFor, otherKeys } from '../helper.ts'

const chat = await startUpstream(t, { name: 'chat' })
const auth = await startUpstream(t, { name: 'auth' })
const gw = await startGateway(t, { CHAT_URL: chat.url, AUTH_URL: auth.url })

const get = (path: string, authorization?: string) => fetch(gw.url + path, { headers: authorization ? { authorization } : {} })

t.test('a valid token passes, unchanged', async (t) => {
  const token = signTestToken(5)
  const res = await get('/api/sessions', `Bearer ${token}`)
  t.equal(res.status, 200)
  t.equal((await res.json()).headers.authorization, `Bearer ${token}`)
})

t.test('attacks and broken tokens are 401 unauthorized with WWW-Authenticate, and never proxied', async (t) => {
  const now = Math.floor(Date.now() / 1000)
  const edHeader = { alg: 'EdDSA', typ: 'JWT' }
  const valid = signTestToken(5)
  const [h, p, s] = valid.split('.')
  const tamperedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: '1' })).toString('base64url')
  const cases: Record<string, string | undefined> = {
    missing: undefined,
    'empty bearer': 'Bearer ',
    'not bearer': `Basic ${Buffer.from('a:b').toString('base64')}`,
    malformed: 'Bearer not-a-jwt',
    'garbage segments': 'Bearer aaa.bbb.ccc',
    'tampered payload': `Bearer ${h}.${tamperedPayload}.${s}`,
    'signature stripped': `Bearer ${h}.${p}.`,
    'alg none': `Bearer ${craftToken({ alg: 'none', typ: 'JWT' }, claimsFor(5))}`,
    'HS256 signed with the public key': `Bearer ${craftToken({ alg: 'HS256', typ: 'JWT' }, claimsFor(5), { hmac: testKeys.publicKey })}`,
    'another key': `Bearer ${craftToken(edHeader, claimsFor(5), { ed25519: otherKeys.privateKey })}`,
    expired: `Bearer ${craftToken(edHeader, claimsFor(5, { iat: now - 7200, exp: now - 3600 }), { ed25519: testKeys.privateKey })}`,
    'wrong issuer': `Bearer ${signTestToken(5, {}, { issuer: 'someone-else' })}`,
    'no exp': `Bearer ${craftToken(edHeader, { sub: '5', iat: now, iss: 'chat-platform', jti: 'j' }, { ed25519: testKeys.privateKey })}`,
    'no sub': `Bearer ${craftToken(edHeader, { iat: now, exp: now + 60, iss: 'chat-platform', jti: 'j' }, { ed25519: testKeys.privateKey })}`,
    'non-numeric sub': `Bearer ${signTestToken('admin')}`,
    'sub with a leading zero': `Bearer ${signTestToken('05')}`,
    'sub in exponent form': `Bearer ${signTestToken('5e0')}`,
    'sub as a JSON number': `Bearer ${craftToken(edHeader, claimsFor(5, { sub: 5 }), { ed25519: testKeys.privateKey })}`,
    'sub beyond MAX_SAFE_INTEGER': `Bearer ${signTestToken('9007199254740993')}`,
    'iat an hour in the future': `Bearer ${craftToken(edHeader, claimsFor(5, { iat: now + 3600, exp: now + 7200 }), { ed25519: testKeys.privateKey })}`,
    'iat a string': `Bearer ${craftToken(edHeader, claimsFor(5, { iat: String(now) }), { ed25519: testKeys.privateKey })}`
  }
  const before = chat.seen.length
  for (const [name, authorization] of Object.entries(cases)) {
    const res = await get('/api/sessions', authorization)
    t.equal(res.status, 401, name)
    t.equal(res.headers.get('www-authenticate'), 'Bearer', `${name}: WWW-Authenticate`)
    const body = await res.json()
    t.equal(body.code, 'unauthorized', `${name}: code`)
    t.equal(body.request_id, res.headers.get('x-request-id'), `${name}: request id`)
  }
  t.equal(chat.seen.length, before, 'no refused request reached the service')
})

t.test('every authenticated mount checks the token; the public ones do not', async (t) => {
  for (const [method, path] of [['GET', '/api/auth/verify'], ['GET', '/api/user/profile'], ['PUT', '/api/user/profile'], ['GET', '/api/user/balance'],
    ['POST', '/api/billing/recharge'], ['GET', '/api/billing/transactions'], ['POST', '/api/sessions'], ['DELETE', '/api/sessions/3'],
    ['GET', '/api/sessions/3/messages'], ['POST', '/api/sessions/3/messages'], ['GET', '/api/auth/register']]) {
    const res = await fetch(gw.url + path, { method })
    t.equal(res.status, 401, `${method} ${path} needs a token`)
  }
  for (const path of ['/api/auth/register', '/api/auth/email-login', '/api/auth/wechat-login']) {
    const res = await fetch(gw.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    t.equal(res.status, 200, `POST ${path} is public`)
  }
  for (const path of ['/healthz', '/metrics']) t.equal((await fetch(gw.url + path)).status, 200, `${path} is public`)
})
