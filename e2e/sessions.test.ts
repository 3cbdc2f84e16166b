// Sessions through the real processes: refresh rotation and the reuse attack, logout and logout-all seen by two
// gateways and two chat replicas (and billing, and auth) within a second, a stolen token refused everywhere.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { startSystem, type Proc } from './support/system.ts'
import { assertProblem, createSession, registerUser, type User } from './support/client.ts'

t.setTimeout(240_000)

// Many logins and refreshes from one address: the public per-IP limit is not under test here.
const system = await startSystem(t, { replicas: { gateway: 1, chat: 1 }, env: { AUTH_RATE_LIMIT_MAX: '1000' } })
const claims = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())

/** Every place a token is checked, with a route each answers for a valid token (200) and refuses for a revoked one (401). */
const checkpoints = (): { what: string, proc: Proc, path: string }[] => [
  ...system.instances('gateway').map((proc, i) => ({ what: `gateway ${i + 1}`, proc, path: '/api/sessions' })),
  ...system.instances('chat').map((proc, i) => ({ what: `chat ${i + 1}`, proc, path: '/api/sessions' })),
  { what: 'billing', proc: system.instances('billing')[0], path: '/api/user/balance' },
  { what: 'auth', proc: system.instances('auth')[0], path: '/api/auth/verify' }
]
const statusAt = async (proc: Proc, path: string, token: string) =>
  (await fetch(`${proc.url}${path}`, { headers: { authorization: `Bearer ${token}` } })).status

/** All checkpoints answer `status` for the token; returns how long after `since` each first did. */
async function timeUntilEverywhere (token: string, status: number, since: number, timeoutMs = 10_000): Promise<Record<string, number>> {
  const seen: Record<string, number> = {}
  await Promise.all(checkpoints().map(async (c) => {
    while (Date.now() - since < timeoutMs) {
      if (await statusAt(c.proc, c.path, token) === status) { seen[c.what] = Date.now() - since; return }
      await sleep(10)
    }
  }))
  return seen
}

t.test('every process is ready once it has caught up with the revocations', async (t) => {
  for (const name of ['gateway', 'auth', 'chat', 'billing'] as const) {
    for (const p of system.instances(name)) {
      const body = await (await fetch(`${p.url}/readyz`)).json()
      t.equal(body.checks.revocations, 'ok', `${name} ${p.replica ?? ''}`)
    }
  }
})

t.test('logins answer expires_in and a refresh token; refresh rotates; the reuse attack revokes the session everywhere', async (t) => {
  const u = await registerUser(system, 'rotate')
  t.match(u.refreshToken, /^[A-Za-z0-9_-]{43}$/)
  const first = await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } })
  t.equal(first.body.expires_in, 3600, 'JWT_TTL defaults to 1 h')

  const r1 = await system.request('POST', '/api/auth/refresh', { body: { refresh_token: u.refreshToken } })
  t.equal(r1.status, 200)
  t.same(Object.keys(r1.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
  t.equal(claims(r1.body.access_token).sid, claims(u.token).sid, 'the same session')
  const victim = r1.body
  t.equal(await statusAt(system.instances('chat')[1], '/api/sessions', victim.access_token), 200, 'the new access token works at a chat replica')

  // The thief replays the refresh token they stole before it was rotated: 401, and the victim's session is over.
  const t0 = Date.now()
  assertProblem(t, await system.request('POST', '/api/auth/refresh', { body: { refresh_token: u.refreshToken } }), 401, 'invalid_refresh_token', 'reused refresh token')
  const seen = await timeUntilEverywhere(victim.access_token, 401, t0)
  t.equal(Object.keys(seen).length, checkpoints().length, `the session's access token refused everywhere: ${JSON.stringify(seen)}`)
  assertProblem(t, await system.request('POST', '/api/auth/refresh', { body: { refresh_token: victim.refresh_token } }), 401, 'invalid_refresh_token', 'the latest refresh token of the session')
  assertProblem(t, await system.request('POST', '/api/auth/refresh', { body: { refresh_token: 'nonsense' } }), 401, 'invalid_refresh_token', 'an unknown refresh token')
  assertProblem(t, await system.request('POST', '/api/auth/refresh', { body: {} }), 400, 'validation_failed', 'no refresh token')
  t.equal((await system.request('GET', '/api/sessions', { token: first.body.access_token })).status, 200, 'another session of the user lives')
})

t.test('logout: a stolen copy of the token is refused by both gateways, both chat replicas, billing and auth within a second', async (t) => {
  const u = await registerUser(system, 'logout')
  await createSession(system, u)
  const stolen = u.token
  // Every checkpoint has verified (and cached) the token before the logout.
  for (const c of checkpoints()) t.equal(await statusAt(c.proc, c.path, stolen), 200, `${c.what} accepts it before`)

  const t0 = Date.now()
  const out = await system.request('POST', '/api/auth/logout', { token: u.token, body: { refresh_token: u.refreshToken } })
  t.equal(out.status, 200)
  t.same(out.body, { message: '已退出登录' })
  const seen = await timeUntilEverywhere(stolen, 401, t0)
  t.equal(Object.keys(seen).length, checkpoints().length, `refused everywhere: ${JSON.stringify(seen)}`)
  for (const [what, ms] of Object.entries(seen)) t.ok(ms < 1000, `${what} refused it ${ms} ms after the logout answered`)
  assertProblem(t, await system.request('POST', '/api/auth/refresh', { body: { refresh_token: u.refreshToken } }), 401, 'invalid_refresh_token', 'the logged-out refresh token')
  assertProblem(t, await system.request('POST', '/api/auth/logout', { token: stolen }), 401, 'unauthorized', 'logout again with the revoked token')
  assertProblem(t, await system.request('POST', '/api/auth/logout', {}), 401, 'unauthorized', 'logout without a token')
})

t.test('logout-all ends every session of the user and nobody else\'s; a new login works at once', async (t) => {
  const u = await registerUser(system, 'all')
  const phone = await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } })
  const other: User = await registerUser(system, 'bystander')
  const t0 = Date.now()
  t.equal((await system.request('POST', '/api/auth/logout-all', { token: u.token })).status, 200)
  for (const token of [u.token, phone.body.access_token]) {
    const seen = await timeUntilEverywhere(token, 401, t0)
    t.equal(Object.keys(seen).length, checkpoints().length, `refused everywhere: ${JSON.stringify(seen)}`)
  }
  assertProblem(t, await system.request('POST', '/api/auth/refresh', { body: { refresh_token: phone.body.refresh_token } }), 401, 'invalid_refresh_token', 'the other device\'s refresh token')
  t.equal((await system.request('GET', '/api/sessions', { token: other.token })).status, 200, 'another user is untouched')
  const again = await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } })
  t.equal((await system.request('GET', '/api/sessions', { token: again.body.access_token })).status, 200, 'logging in again works')
})

t.test('a gateway started after the revocations catches up before it is ready, then refuses them', async (t) => {
  const u = await registerUser(system, 'late')
  t.equal((await system.request('POST', '/api/auth/logout', { token: u.token })).status, 200)
  await timeUntilEverywhere(u.token, 401, Date.now())
  const late = await system.addReplica('gateway')
  await system.startProc(late)
  let ready = false
  for (let i = 0; i < 200 && !ready; i++) {
    ready = (await fetch(`${late.url}/readyz`)).status === 200
    if (!ready) await sleep(50)
  }
  t.ok(ready, 'the new gateway becomes ready')
  t.equal(await statusAt(late, '/api/sessions', u.token), 401, 'and refuses the token revoked before it started')
})

t.test('a password change through the gateway ends the other sessions everywhere and answers a working fresh pair', async (t) => {
  const u = await registerUser(system, 'password')
  const other = await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } })
  const t0 = Date.now()
  const res = await system.request('PUT', '/api/user/password', { token: u.token, body: { old_password: u.password, new_password: 'new-password-1' } })
  t.equal(res.status, 200, JSON.stringify(res.body))
  for (const token of [u.token, other.body.access_token]) {
    const seen = await timeUntilEverywhere(token, 401, t0)
    t.equal(Object.keys(seen).length, checkpoints().length, `refused everywhere: ${JSON.stringify(seen)}`)
  }
  t.equal((await system.request('GET', '/api/sessions', { token: res.body.access_token })).status, 200, 'the fresh token works')
  assertProblem(t, await system.request('PUT', '/api/user/password', { token: res.body.access_token, body: { old_password: u.password, new_password: 'new-password-2' } }), 401, 'invalid_credentials', 'the old password as old_password')
  assertProblem(t, await system.request('PUT', '/api/user/password', { token: res.body.access_token, body: { old_password: 'new-password-1', new_password: 'short' } }), 400, 'validation_failed', 'a short new password')
  assertProblem(t, await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } }), 401, 'invalid_credentials', 'the old password at login')
  t.equal((await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: 'new-password-1' } })).status, 200, 'the new password logs in')
})
