// GET /api/auth/verify: the user with tokens from billing's cache, and every kind of bad token refused with 401.
import t from 'tap'
import { createHmac, generateKeyPairSync } from 'node:crypto'
import { signTestToken, testKeys } from '@chat-platform/platform/testing'
import { buildTestApp, bearer } from '../helper.ts'
import { b64, signEdDSA } from '../jwt.ts'

t.test('returns {user:{id, email, nickname, tokens}} with tokens from billing:balance:<id>', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'erin@example.com', nickname: 'Erin' })
  await s.seedBalance(u.user_id, 1234)
  const res = await s.app.inject({ url: '/api/auth/verify', headers: bearer(await s.tokenFor(u.email, u.password)) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { user: { id: u.user_id, email: 'erin@example.com', nickname: 'Erin', tokens: 1234 } })
  t.ok(res.headers['x-request-id'])
})

t.test('billing unreachable and no cached balance: 503 service_unavailable, no internals leaked', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  const res = await s.app.inject({ url: '/api/auth/verify', headers: bearer(await s.tokenFor(u.email, u.password)) })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'service_unavailable')
  t.notMatch(res.body, /127\.0\.0\.1|internal\/balances|ECONNREFUSED/)
})

t.test('a valid token for a user that does not exist (any more) is 401', async (t) => {
  const s = await buildTestApp(t)
  const res = await s.app.inject({ url: '/api/auth/verify', headers: bearer(signTestToken(424242)) })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
})

t.test('JWT attacks are all 401 unauthorized with WWW-Authenticate: Bearer', async (t) => {
  const s = await buildTestApp(t)
  const victim = await s.register()
  const attacker = await s.register()
  await s.seedBalance(victim.user_id, 1)
  await s.seedBalance(attacker.user_id, 1)
  const good = await s.tokenFor(attacker.email, attacker.password)
  const [h, p, sig] = good.split('.')
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString())
  const now = Math.floor(Date.now() / 1000)
  const other = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()

  const forged: [string, Record<string, string>][] = [
    ['no Authorization header', {}],
    ['not a bearer scheme', { authorization: `Basic ${b64('a:b')}` }],
    ['bearer with garbage', { authorization: 'Bearer not-a-token' }],
    ['two segments', { authorization: `Bearer ${h}.${p}` }],
    ['bearer without token', { authorization: 'Bearer ' }],
    ['payload tampered (sub → victim), signature kept', bearer(`${h}.${b64({ ...claims, sub: String(victim.user_id) })}.${sig}`)],
    ['payload tampered (role → admin)', bearer(`${h}.${b64({ ...claims, role: 'admin' })}.${sig}`)],
    ['alg: none, no signature', bearer(`${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, sub: String(victim.user_id) })}.`)],
    ['alg: HS256 keyed with the public key', bearer((() => {
      const head = b64({ alg: 'HS256', typ: 'JWT' })
      const body = b64({ ...claims, sub: String(victim.user_id) })
      return `${head}.${body}.${createHmac('sha256', testKeys.publicKey).update(`${head}.${body}`).digest('base64url')}`
    })())],
    ['expired', bearer(signEdDSA({ ...claims, iat: now - 3600, exp: now - 60 }, testKeys.privateKey))],
    ['wrong issuer', bearer(signTestToken(attacker.user_id, {}, { issuer: 'evil-issuer' }))],
    ['signed by another Ed25519 key', bearer(signTestToken(attacker.user_id, {}, { privateKey: other }))],
    ['no jti', bearer(signEdDSA({ ...claims, jti: undefined }, testKeys.privateKey))],
    ['sub not a user id', bearer(signTestToken('admin'))],
    ['no exp', bearer(signEdDSA({ ...claims, exp: undefined }, testKeys.privateKey))],
    ['no iss', bearer(signEdDSA({ ...claims, iss: undefined }, testKeys.privateKey))],
    ['sub zero', bearer(signEdDSA({ ...claims, sub: '0' }, testKeys.privateKey))]
  ]
  for (const [name, headers] of forged) {
    const res = await s.app.inject({ url: '/api/auth/verify', headers })
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', name)
    t.equal(res.headers['www-authenticate'], 'Bearer', name)
    t.notMatch(res.body, String(victim.email), name)
  }
  const control = await s.app.inject({ url: '/api/auth/verify', headers: bearer(signEdDSA({ ...claims, jti: 'another-jti' }, testKeys.privateKey)) })
  t.equal(control.statusCode, 200, 'control: the forging helper itself makes acceptable tokens')
  const ok = await s.app.inject({ url: '/api/auth/verify', headers: bearer(good) })
  t.equal(ok.statusCode, 200, 'the untampered token still works')
  t.equal(ok.json().user.id, attacker.user_id)
})
