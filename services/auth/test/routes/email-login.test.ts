// POST /api/auth/email-login: the token's claims, admin role, 401 invalid_credentials alike for unknown emails, rehash.
import t from 'tap'
import { hash, parseOptions } from '@node-rs/argon2'
import { buildTestApp, bearer } from '../helper.ts'
import { decodeJwt } from '../jwt.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

t.test('a correct login returns an EdDSA bearer token with sub, iat, exp (JWT_TTL), iss and a fresh jti', async (t) => {
  const s = await buildTestApp(t, { JWT_TTL: '3600' })
  const u = await s.register({ email: 'carol@example.com' })
  const res = await s.login('  CAROL@example.com ', u.password)
  t.equal(res.statusCode, 200, 'email is trimmed and lower-cased at login too')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['access_token', 'token_type'])
  t.equal(body.token_type, 'bearer')
  const { header, payload } = decodeJwt(body.access_token)
  t.equal(header.alg, 'EdDSA')
  t.equal(payload.sub, String(u.user_id))
  t.equal(payload.iss, 'chat-platform')
  t.match(payload.jti, UUID)
  t.equal((payload.exp as number) - (payload.iat as number), 3600)
  t.ok(Math.abs((payload.iat as number) - Date.now() / 1000) < 60)
  t.notOk('role' in payload)
  t.notOk('email' in payload, 'no personal data in the token')

  const again = decodeJwt((await s.login('carol@example.com', u.password)).json().access_token)
  t.not(again.payload.jti, payload.jti, 'every token has its own jti')

  await s.seedBalance(u.user_id, 7)
  const verify = await s.app.inject({ url: '/api/auth/verify', headers: bearer(body.access_token) })
  t.equal(verify.statusCode, 200, 'the token is accepted by the service itself')
})

t.test('emails in ADMIN_EMAILS get role "admin"; others do not', async (t) => {
  const s = await buildTestApp(t, { ADMIN_EMAILS: ' Root@Example.com , ops@example.com' })
  const admin = await s.register({ email: 'root@example.com' })
  const user = await s.register({ email: 'someone@example.com' })
  t.equal(decodeJwt(await s.tokenFor(admin.email, admin.password)).payload.role, 'admin')
  t.notOk(decodeJwt(await s.tokenFor(user.email, user.password)).payload.role)
})

t.test('a wrong password and an unknown email get the same 401 invalid_credentials', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'dave@example.com' })
  const wrong = await s.login(u.email, 'not the password')
  const unknown = await s.login('nobody@example.com', 'not the password')
  for (const res of [wrong, unknown]) {
    t.equal(res.statusCode, 401)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
  }
  const strip = (b: Record<string, unknown>) => ({ ...b, request_id: undefined })
  t.same(strip(wrong.json()), strip(unknown.json()), 'identical bodies')
  t.equal(wrong.json().code, 'invalid_credentials')
})

t.test('a WeChat-only user (no password) cannot log in by email', async (t) => {
  const s = await buildTestApp(t)
  await s.deps.db.insertInto('users').values({ email: 'wx@example.com', password_hash: null, nickname: 'wx' }).execute()
  const res = await s.login('wx@example.com', 'anything-at-all')
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'invalid_credentials')
})

t.test('missing or empty fields are 400 validation_failed', async (t) => {
  const s = await buildTestApp(t)
  for (const payload of [{ email: 'a@example.com' }, { password: 'x' }, { email: '', password: 'password-1' }, { email: 'a@example.com', password: '' }]) {
    const res = await s.app.inject({ method: 'POST', url: '/api/auth/email-login', payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().code, 'validation_failed')
  }
})

t.test('a hash made with weaker parameters is upgraded at the next successful login', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'old@example.com' })
  const weak = await hash(u.password, { algorithm: 2, memoryCost: 4096, timeCost: 3, parallelism: 1 })
  await s.deps.db.updateTable('users').set({ password_hash: weak }).where('id', '=', u.user_id).execute()
  t.equal((await s.login(u.email, u.password)).statusCode, 200)
  const row = await s.deps.db.selectFrom('users').select('password_hash').where('id', '=', u.user_id).executeTakeFirstOrThrow()
  t.equal(parseOptions(row.password_hash!).memoryCost, 19456)
  t.equal((await s.login(u.email, u.password)).statusCode, 200, 'the new hash verifies')
})
