// A service behind the gateway checks the same claims (sub a canonical user id, iat not in the future) and answers a bad URL with a problem.
import t from 'tap'
import { sign } from 'node:crypto'
import { testKeys } from '@chat-platform/platform/testing'
import { buildTestApp } from '../helper.ts'

/** A token signed by the test key with exactly these claims. */
function signClaims (claims: Record<string, unknown>): string {
  const data = `${Buffer.from('{"alg":"EdDSA","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
  return `${data}.${sign(null, Buffer.from(data), testKeys.privateKey).toString('base64url')}`
}

t.test('chat refuses tokens whose sub is not a canonical user id or whose iat lies in the future', async (t) => {
  const { app } = await buildTestApp(t)
  const now = Math.floor(Date.now() / 1000)
  const claims = (extra: Record<string, unknown>) => ({ sub: '31', iat: now, exp: now + 600, iss: 'chat-platform', jti: `j-${Math.random()}`, ...extra })
  const list = (token: string) => app.inject({ method: 'GET', url: '/api/sessions', headers: { authorization: `Bearer ${token}` } })

  t.equal((await list(signClaims(claims({})))).statusCode, 200, 'the control token passes')
  t.equal((await list(signClaims(claims({ iat: now + 10 })))).statusCode, 200, 'an iat within the clock skew passes')
  const refused: Record<string, Record<string, unknown>> = {
    'sub 031': { sub: '031' },
    'sub 31.0': { sub: '31.0' },
    'sub 3.1e1': { sub: '3.1e1' },
    'sub " 31"': { sub: ' 31' },
    'sub as a number': { sub: 31 },
    'sub beyond MAX_SAFE_INTEGER': { sub: '9007199254740993' },
    'iat a day ahead': { iat: now + 86_400, exp: now + 90_000 },
    'iat a minute ahead': { iat: now + 60 },
    'iat not a number': { iat: 'now' }
  }
  for (const [name, extra] of Object.entries(refused)) {
    const res = await list(signClaims(claims(extra)))
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', `${name}: code`)
    t.equal(res.headers['www-authenticate'], 'Bearer', `${name}: WWW-Authenticate`)
  }
})

t.test('a malformed percent-encoding in the path is a 400 problem at the service too', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/api/sessions/%E0%A4%A/messages', headers: { 'x-request-id': 'svc-bad-url' } })
  t.equal(res.statusCode, 400)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.match(res.json(), { code: 'validation_failed', request_id: 'svc-bad-url' })
})
