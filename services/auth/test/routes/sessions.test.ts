// Sessions: refresh rotation and reuse detection, logout and logout-all, and their revocations read back from AUTH_REVOCATIONS.
import t from 'tap'
import { jetstream, DeliverPolicy } from '@nats-io/jetstream'
import { namespaced, TokenRevokedSchema } from '@chat-platform/contracts'
import { waitFor } from '@chat-platform/platform/testing'
import Value from 'typebox/value'
import { buildTestApp, bearer, type TestApp } from '../helper.ts'
import { decodeJwt } from '../jwt.ts'
import { hashRefreshToken } from '../../src/sessions.ts'

async function loginPair (s: TestApp) {
  const u = await s.register()
  const res = await s.login(u.email, u.password)
  t.equal(res.statusCode, 200)
  return { user: u, ...res.json() as { access_token: string, refresh_token: string, expires_in: number } }
}

const refresh = (s: TestApp, token: unknown) => s.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: token } })
const verify = (s: TestApp, token: string) => s.app.inject({ url: '/api/auth/verify', headers: bearer(token) })

/** The access token is refused (401) once its revocation came back from the stream, cache hit included. */
const waitRefused = (s: TestApp, token: string, what: string) =>
  waitFor(async () => (await verify(s, token)).statusCode === 401, { what, timeoutMs: 5_000 })

t.test('a login starts a session: an opaque refresh token (256 bits), stored only as its sha-256, and a sid claim', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 0)
  const p = await loginPair(s)
  t.match(p.refresh_token, /^[A-Za-z0-9_-]{43}$/)
  const { payload } = decodeJwt(p.access_token)
  t.type(payload.sid, 'string')
  const family = await s.deps.db.selectFrom('refresh_families').selectAll().where('id', '=', payload.sid as string).executeTakeFirstOrThrow()
  t.equal(Number(family.user_id), p.user.user_id)
  const rows = await s.deps.db.selectFrom('refresh_tokens').selectAll().execute()
  t.equal(rows.length, 1)
  t.same(rows[0].token_hash, hashRefreshToken(p.refresh_token), 'the hash is stored')
  t.notOk(JSON.stringify(rows).includes(p.refresh_token), 'never the token itself')
  const days = (rows[0].expires_at.getTime() - Date.now()) / 86400_000
  t.ok(days > 29.9 && days <= 30, `refresh token lives 30 days (${days})`)
})

t.test('refresh rotates: a new pair in the same session; the old refresh token used again revokes the whole session', async (t) => {
  const s = await buildTestApp(t, { JWT_TTL: '900' })
  const p = await loginPair(s)
  await s.seedBalance(p.user.user_id, 5)
  const sid = decodeJwt(p.access_token).payload.sid

  const r1 = await refresh(s, p.refresh_token)
  t.equal(r1.statusCode, 200)
  const b1 = r1.json()
  t.same(Object.keys(b1).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
  t.equal(b1.expires_in, 900)
  t.not(b1.refresh_token, p.refresh_token, 'a new refresh token')
  t.equal(decodeJwt(b1.access_token).payload.sid, sid, 'same session')
  t.equal(decodeJwt(b1.access_token).payload.sub, String(p.user.user_id))

  const r2 = await refresh(s, b1.refresh_token)
  t.equal(r2.statusCode, 200, 'the new one works')
  const b2 = r2.json()
  t.equal((await verify(s, b2.access_token)).statusCode, 200)
  t.equal((await verify(s, p.access_token)).statusCode, 200, 'the first access token too (same live session)')

  // The attacker replays the first (rotated) refresh token.
  const reuse = await refresh(s, p.refresh_token)
  t.equal(reuse.statusCode, 401)
  t.equal(reuse.json().code, 'invalid_refresh_token')
  t.equal((await refresh(s, b2.refresh_token)).statusCode, 401, 'the legitimate latest refresh token is dead too')
  await waitRefused(s, b2.access_token, 'the latest access token of the session refused')
  t.equal((await verify(s, p.access_token)).statusCode, 401, 'and every earlier one')
  const fam = await s.deps.db.selectFrom('refresh_families').selectAll().where('id', '=', sid as string).executeTakeFirstOrThrow()
  t.equal(fam.revoked_reason, 'reuse')

  // Another session of the same user is untouched.
  const other = await s.login(p.user.email, p.user.password)
  t.equal((await verify(s, other.json().access_token)).statusCode, 200)
  t.equal((await refresh(s, other.json().refresh_token)).statusCode, 200)
})

t.test('refresh refuses unknown, malformed and expired tokens', async (t) => {
  const s = await buildTestApp(t)
  const p = await loginPair(s)
  for (const bad of ['x', 'A'.repeat(43), p.refresh_token + 'A']) {
    const res = await refresh(s, bad)
    t.equal(res.statusCode, 401, bad)
    t.equal(res.json().code, 'invalid_refresh_token')
  }
  for (const body of [{}, { refresh_token: 5 }, { refresh_token: '' }]) {
    const res = await s.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: body })
    t.equal(res.statusCode, 400, JSON.stringify(body))
  }
  await s.deps.db.updateTable('refresh_tokens').set({ expires_at: new Date(Date.now() - 1000) }).execute()
  t.equal((await refresh(s, p.refresh_token)).statusCode, 401, 'expired')
})

t.test('two refreshes of one token at once: one pair, then the session is revoked as reuse', async (t) => {
  const s = await buildTestApp(t)
  const p = await loginPair(s)
  const [a, b] = await Promise.all([refresh(s, p.refresh_token), refresh(s, p.refresh_token)])
  t.same([a.statusCode, b.statusCode].sort(), [200, 401])
})

t.test('logout: this access token, its session and the given refresh token stop working; other sessions live', async (t) => {
  const s = await buildTestApp(t)
  const p = await loginPair(s)
  await s.seedBalance(p.user.user_id, 5)
  const other = (await s.login(p.user.email, p.user.password)).json()
  t.equal((await verify(s, p.access_token)).statusCode, 200, 'verified (and cached) before the logout')

  const res = await s.app.inject({ method: 'POST', url: '/api/auth/logout', headers: { ...bearer(p.access_token), 'content-type': 'application/json' }, payload: JSON.stringify({ refresh_token: p.refresh_token }) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { message: '已退出登录' })
  await waitRefused(s, p.access_token, 'the logged-out token refused')
  t.equal((await refresh(s, p.refresh_token)).statusCode, 401, 'its refresh token is dead')
  t.equal((await verify(s, other.access_token)).statusCode, 200, 'the other session lives')
  t.equal((await refresh(s, other.refresh_token)).statusCode, 200)

  t.equal((await s.app.inject({ method: 'POST', url: '/api/auth/logout' })).statusCode, 401, 'logout needs a token')
  const empty = await s.app.inject({ method: 'POST', url: '/api/auth/logout', headers: { ...bearer(other.access_token), 'content-type': 'application/json' } })
  t.equal(empty.statusCode, 200, 'an empty JSON body is no body')
  const badBody = await s.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(p.access_token), payload: { refresh_token: 7 } })
  t.equal(badBody.statusCode, 401, 'a revoked token is refused before its body is looked at')
})

t.test("logout with someone else's refresh token does not end their session", async (t) => {
  const s = await buildTestApp(t)
  const a = await loginPair(s)
  const b = await loginPair(s)
  const res = await s.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(a.access_token), payload: { refresh_token: b.refresh_token } })
  t.equal(res.statusCode, 200)
  t.equal((await refresh(s, b.refresh_token)).statusCode, 200)
})

t.test('logout-all: every session and every token of the user, issued before now, stops working', async (t) => {
  const s = await buildTestApp(t)
  const p = await loginPair(s)
  await s.seedBalance(p.user.user_id, 5)
  const second = (await s.login(p.user.email, p.user.password)).json()
  const stranger = await loginPair(s)
  await s.seedBalance(stranger.user.user_id, 5)

  const res = await s.app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(second.access_token) })
  t.equal(res.statusCode, 200)
  t.type(res.json().message, 'string')
  await waitRefused(s, p.access_token, 'the first session refused')
  await waitRefused(s, second.access_token, 'the calling session refused')
  t.equal((await refresh(s, p.refresh_token)).statusCode, 401)
  t.equal((await refresh(s, second.refresh_token)).statusCode, 401)
  t.equal((await verify(s, stranger.access_token)).statusCode, 200, "another user's token lives")

  // Logging in again afterwards works (possibly in the same second).
  const again = (await s.login(p.user.email, p.user.password)).json()
  t.equal((await verify(s, again.access_token)).statusCode, 200)
})

t.test('every revocation is an auth.token.revoked event on AUTH_REVOCATIONS, matching the contract', async (t) => {
  const s = await buildTestApp(t)
  const p = await loginPair(s)
  const out = await s.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(p.access_token) })
  t.equal(out.statusCode, 200, 'no body at all is fine too')
  await waitFor(async () => {
    const rows = await s.deps.db.selectFrom('outbox').select(['published_at']).where('subject', 'like', '%auth.token.revoked').execute()
    return rows.length === 2 && rows.every((r) => r.published_at)
  }, { what: 'revocations published' })
  const names = namespaced(s.config.EVENTS_NAMESPACE)
  const consumer = await jetstream(s.deps.nc).consumers.get(names.streams.AUTH_REVOCATIONS.name, { deliver_policy: DeliverPolicy.All })
  const events: any[] = []
  for (let i = 0; i < 2; i++) {
    const m = await consumer.next({ expires: 5_000 })
    if (!m) break
    t.equal(m.subject, names.subject('auth.token.revoked'))
    events.push(m.json())
  }
  t.equal(events.length, 2)
  for (const e of events) t.ok(Value.Check(TokenRevokedSchema, e), JSON.stringify(e))
  const { payload } = decodeJwt(p.access_token)
  t.ok(events.some((e) => e.jti === payload.jti && e.exp === payload.exp), 'the jti until its exp')
  t.ok(events.some((e) => e.sid === payload.sid && e.exp > (payload.exp as number)), 'the session')
})
