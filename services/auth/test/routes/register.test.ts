// POST /api/auth/register: success, normalization, argon2id parameters, 409 email_taken, 400 validation_failed.
import t from 'tap'
import { parseOptions } from '@node-rs/argon2'
import { buildTestApp } from '../helper.ts'

const post = (s: Awaited<ReturnType<typeof buildTestApp>>, payload: unknown) =>
  s.app.inject({ method: 'POST', url: '/api/auth/register', payload: payload as object })

t.test('registers a user: 注册成功 with an integer id, email normalized, nickname trimmed, argon2id at OWASP parameters', async (t) => {
  const s = await buildTestApp(t)
  const res = await post(s, { email: '  Alice.Smith@Example.COM ', password: 'pa55word!', nickname: '  爱丽丝  ' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['message', 'user_id'])
  t.equal(body.message, '注册成功')
  t.ok(Number.isSafeInteger(body.user_id) && body.user_id > 0)

  const row = await s.deps.db.selectFrom('users').selectAll().where('id', '=', body.user_id).executeTakeFirstOrThrow()
  t.equal(row.email, 'alice.smith@example.com')
  t.equal(row.nickname, '爱丽丝')
  t.equal(row.avatar_url, null)
  t.not(row.password_hash, 'pa55word!')
  const o = parseOptions(row.password_hash!)
  t.match(row.password_hash, /^\$argon2id\$/)
  t.same({ m: o.memoryCost, t: o.timeCost, p: o.parallelism }, { m: 19456, t: 2, p: 1 })

  t.equal((await s.login('alice.smith@example.com', 'pa55word!')).statusCode, 200, 'can log in with the new account')
})

t.test('registration writes auth.user.registered to the outbox in the same transaction', async (t) => {
  const s = await buildTestApp(t)
  const { user_id: userId } = await s.register()
  const rows = await s.deps.db.selectFrom('outbox').selectAll().execute()
  t.equal(rows.length, 1)
  t.equal(rows[0].subject, `${s.config.EVENTS_NAMESPACE}.auth.user.registered`)
  t.match(rows[0].payload, { user_id: userId, via: 'email', event_id: rows[0].id })
})

t.test('an email that exists (whatever its case and spaces) is 409 email_taken and writes no event', async (t) => {
  const s = await buildTestApp(t)
  await s.register({ email: 'bob@example.com' })
  const res = await post(s, { email: ' BOB@example.com', password: 'another-password', nickname: 'Bob 2' })
  t.equal(res.statusCode, 409)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.match(res.json(), { status: 409, code: 'email_taken', title: String, detail: String, request_id: res.headers['x-request-id'], type: /email-taken$/ })
  t.equal((await s.deps.db.selectFrom('users').select('id').execute()).length, 1)
  t.equal((await s.deps.db.selectFrom('outbox').select('id').execute()).length, 1, 'only the first registration produced an event')
})

t.test('two registrations racing for one email: one 200, one 409', async (t) => {
  const s = await buildTestApp(t)
  const body = { email: 'race@example.com', password: 'password-123', nickname: 'R' }
  const codes = (await Promise.all([post(s, body), post(s, body)])).map((r) => r.statusCode).sort()
  t.same(codes, [200, 409])
})

t.test('invalid bodies are 400 validation_failed naming the field', async (t) => {
  const s = await buildTestApp(t)
  const ok = { email: 'v@example.com', password: 'password-123', nickname: 'V' }
  const cases: [string, unknown, string][] = [
    ['not an email', { ...ok, email: 'not-an-email' }, '/body/email'],
    ['password of 7 characters', { ...ok, password: '1234567' }, '/body/password'],
    ['nickname only spaces', { ...ok, nickname: '    ' }, '/body/nickname'],
    ['nickname of 33 characters', { ...ok, nickname: 'x'.repeat(33) }, '/body/nickname'],
    ['missing password', { email: ok.email, nickname: 'V' }, '/body/password'],
    ['nickname not a string', { ...ok, nickname: 42 }, '/body/nickname'],
    ['email not a string', { ...ok, email: ['v@example.com'] }, '/body/email']
  ]
  for (const [name, payload, path] of cases) {
    const res = await post(s, payload)
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'validation_failed', name)
    t.ok(res.json().errors?.some((e: { path: string }) => e.path === path), `${name}: errors name ${path}`)
  }
  const notJson = await s.app.inject({ method: 'POST', url: '/api/auth/register', headers: { 'content-type': 'application/json' }, payload: '{"email":' })
  t.equal(notJson.statusCode, 400)
  t.equal(notJson.json().code, 'validation_failed')
  t.equal((await s.deps.db.selectFrom('users').select('id').execute()).length, 0, 'nothing was stored')
})

t.test('limits are inclusive: 8-character password and 32-character nickname (counted in characters, not bytes)', async (t) => {
  const s = await buildTestApp(t)
  const res = await post(s, { email: 'edge@example.com', password: '12345678', nickname: '微'.repeat(32) })
  t.equal(res.statusCode, 200)
})

t.test('unknown body fields are ignored, never stored (no mass assignment)', async (t) => {
  const s = await buildTestApp(t)
  const res = await post(s, { email: 'm@example.com', password: 'password-123', nickname: 'M', id: 999, tokens: 1_000_000, role: 'admin', avatar_url: 'https://evil.example/a.png', created_at: '2000-01-01T00:00:00Z' })
  t.equal(res.statusCode, 200)
  t.not(res.json().user_id, 999)
  const row = await s.deps.db.selectFrom('users').selectAll().executeTakeFirstOrThrow()
  t.equal(row.avatar_url, null)
  t.ok(row.created_at.getFullYear() > 2000)
  const token = await s.tokenFor('m@example.com', 'password-123')
  t.notOk(JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).role, 'no role claim')
})
