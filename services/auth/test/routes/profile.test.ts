// GET/PUT /api/user/profile: own profile only, nickname and avatar_url editable, validation, no mass assignment.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildTestApp, bearer, type Teardown } from '../helper.ts'
import { decodeJwt } from '../jwt.ts'

async function setup (t: Teardown) {
  const s = await buildTestApp(t)
  const u = await s.register({ email: 'frank@example.com', nickname: 'Frank' })
  await s.seedBalance(u.user_id, 500)
  const token = await s.tokenFor(u.email, u.password)
  const get = () => s.app.inject({ url: '/api/user/profile', headers: bearer(token) })
  const put = (payload: unknown) => s.app.inject({ method: 'PUT', url: '/api/user/profile', headers: bearer(token), payload: payload as object })
  return { s, u, token, get, put }
}

const ISO_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/

t.test('GET returns exactly {id, email, nickname, avatar_url, tokens, created_at, updated_at}', async (t) => {
  const { u, get } = await setup(t)
  const res = await get()
  t.equal(res.statusCode, 200)
  const p = res.json()
  t.same(Object.keys(p).sort(), ['avatar_url', 'created_at', 'email', 'id', 'nickname', 'tokens', 'updated_at'])
  t.match(p, { id: u.user_id, email: 'frank@example.com', nickname: 'Frank', avatar_url: null, tokens: 500 })
  t.match(p.created_at, ISO_Z)
  t.match(p.updated_at, ISO_Z)
})

t.test('PUT changes nickname (trimmed) and avatar_url, returns the profile with a newer updated_at', async (t) => {
  const { s, u, get, put } = await setup(t)
  const before = (await get()).json()
  const res = await put({ nickname: '  Franky  ', avatar_url: 'https://cdn.example.com/a/frank.png?v=2' })
  t.equal(res.statusCode, 200)
  const p = res.json()
  t.match(p, { id: u.user_id, email: 'frank@example.com', nickname: 'Franky', avatar_url: 'https://cdn.example.com/a/frank.png?v=2', tokens: 500, created_at: before.created_at })
  t.ok(Date.parse(p.updated_at) >= Date.parse(before.updated_at))
  t.same((await get()).json(), p, 'GET shows the change')

  const only = await put({ avatar_url: 'http://example.org/b.jpg' })
  t.match(only.json(), { nickname: 'Franky', avatar_url: 'http://example.org/b.jpg' }, 'a partial update keeps the other field')
  const none = await put({})
  t.equal(none.statusCode, 200)
  t.match(none.json(), { nickname: 'Franky', avatar_url: 'http://example.org/b.jpg' })
  t.equal((await s.deps.db.selectFrom('users').select('id').execute()).length, 1)
})

t.test('mass assignment: id, email, tokens, role, openid, password_hash, created_at in the body change nothing', async (t) => {
  const { s, u, token, put } = await setup(t)
  const rowBefore = await s.deps.db.selectFrom('users').selectAll().where('id', '=', u.user_id).executeTakeFirstOrThrow()
  const res = await put({
    nickname: 'Legit',
    id: 999,
    user_id: 999,
    email: 'attacker@evil.example',
    tokens: 999_999_999,
    balance: 999_999_999,
    role: 'admin',
    openid: 'oHijack',
    unionid: 'uHijack',
    password_hash: '$argon2id$v=19$m=19456,t=2,p=1$AAAA$BBBB',
    created_at: '2000-01-01T00:00:00Z',
    updated_at: '2000-01-01T00:00:00Z'
  })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: u.user_id, email: 'frank@example.com', nickname: 'Legit', tokens: 500 })
  const row = await s.deps.db.selectFrom('users').selectAll().where('id', '=', u.user_id).executeTakeFirstOrThrow()
  t.equal(row.email, rowBefore.email)
  t.equal(row.password_hash, rowBefore.password_hash)
  t.same(row.created_at, rowBefore.created_at)
  t.equal((await s.deps.db.selectFrom('wechat_identities').select('id').execute()).length, 0)
  t.equal((await s.deps.db.selectFrom('users').select('id').where('id', '=', 999).execute()).length, 0)
  t.equal((await s.login(u.email, u.password)).statusCode, 200, 'password unchanged')
  t.notOk(decodeJwt(await s.tokenFor(u.email, u.password)).payload.role, 'no admin role gained')
  t.equal((await s.app.inject({ url: '/api/user/profile', headers: bearer(token) })).json().tokens, 500)
})

t.test('invalid nickname or avatar_url is 400 validation_failed and changes nothing', async (t) => {
  const { s, u, put } = await setup(t)
  const cases: [string, unknown, string][] = [
    ['nickname only spaces', { nickname: '   ' }, '/body/nickname'],
    ['nickname of 33 characters', { nickname: '长'.repeat(33) }, '/body/nickname'],
    ['nickname a number', { nickname: 7 }, '/body/nickname'],
    ['avatar_url ftp', { avatar_url: 'ftp://example.com/a.png' }, '/body/avatar_url'],
    ['avatar_url javascript:', { avatar_url: 'javascript:alert(1)' }, '/body/avatar_url'],
    ['avatar_url file:', { avatar_url: 'file:///etc/passwd' }, '/body/avatar_url'],
    ['avatar_url relative', { avatar_url: '/images/a.png' }, '/body/avatar_url'],
    ['avatar_url with spaces', { avatar_url: 'https://example.com/a b.png' }, '/body/avatar_url'],
    ['avatar_url over 512 characters', { avatar_url: `https://example.com/${'a'.repeat(493)}` }, '/body/avatar_url'],
    ['avatar_url not parseable', { avatar_url: 'http://[::1' }, '/body/avatar_url']
  ]
  for (const [name, payload, path] of cases) {
    const res = await put(payload)
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'validation_failed', name)
    t.ok(res.json().errors?.some((e: { path: string }) => e.path === path), `${name}: names ${path}`)
  }
  t.equal((await put({ avatar_url: `https://example.com/${'a'.repeat(492)}` })).statusCode, 200, 'exactly 512 characters is fine')
  const row = await s.deps.db.selectFrom('users').selectAll().where('id', '=', u.user_id).executeTakeFirstOrThrow()
  t.equal(row.nickname, 'Frank')
})

t.test('avatar_url is stored, never fetched: internal addresses are just text to us', async (t) => {
  const { put, get } = await setup(t)
  let hits = 0
  const canary = createServer((_req, res) => { hits++; res.end() })
  await new Promise<void>((resolve) => canary.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => canary.close(() => resolve())))
  const url = `http://127.0.0.1:${(canary.address() as AddressInfo).port}/latest/meta-data/`
  t.equal((await put({ avatar_url: url })).statusCode, 200)
  t.equal((await get()).json().avatar_url, url)
  t.equal(hits, 0, 'no request reached the address')
})

t.test('no token is 401 (before the body is even validated); a token for a missing user is 401', async (t) => {
  const { s } = await setup(t)
  for (const req of [{ method: 'GET' as const }, { method: 'PUT' as const, payload: { nickname: '' } }]) {
    const res = await s.app.inject({ url: '/api/user/profile', ...req })
    t.equal(res.statusCode, 401, req.method)
    t.equal(res.json().code, 'unauthorized')
    t.equal(res.headers['www-authenticate'], 'Bearer')
  }
  const { signTestToken } = await import('@chat-platform/platform/testing')
  for (const method of ['GET', 'PUT'] as const) {
    const res = await s.app.inject({ method, url: '/api/user/profile', headers: bearer(signTestToken(987654)), payload: method === 'PUT' ? { nickname: 'x' } : undefined })
    t.equal(res.statusCode, 401, `${method} for a missing user`)
  }
})

t.test('billing unreachable and no cached balance: GET and PUT are 503, and the PUT changed nothing', async (t) => {
  const { s, u, token } = await setup(t)
  await s.deps.redis.del(`billing:balance:${u.user_id}`)
  const get = await s.app.inject({ url: '/api/user/profile', headers: bearer(token) })
  t.equal(get.statusCode, 503)
  t.equal(get.json().code, 'service_unavailable')
  const put = await s.app.inject({ method: 'PUT', url: '/api/user/profile', headers: bearer(token), payload: { nickname: 'Offline' } })
  t.equal(put.statusCode, 503)
  const row = await s.deps.db.selectFrom('users').select('nickname').where('id', '=', u.user_id).executeTakeFirstOrThrow()
  t.equal(row.nickname, 'Frank')
})
