// Deleting an account through the real processes: chat content gone (chat's consumer of auth.user.deleted), the ledger
// kept and still auditing clean, every token dead at the gateway and the services, the email registering again.
import t from 'tap'
import pg from 'pg'
import { waitFor } from '@chat-platform/platform/testing'
import { startSystem } from './support/system.ts'
import { assertAuditPasses, assertProblem, createSession, recharge, registerUser, SIGNUP_BONUS } from './support/client.ts'

t.setTimeout(180_000)

const system = await startSystem(t, { env: { AUTH_RATE_LIMIT_MAX: '1000' } })
const db = new pg.Client({ connectionString: system.databaseUrl })
await db.connect()
t.teardown(() => db.end())
const rows = async (query: string, id: number) => Number((await db.query(query, [id])).rows[0].n)

t.test('delete an account end to end', async (t) => {
  const u = await registerUser(system, 'leaving')
  const bystander = await registerUser(system, 'staying')
  for (const who of [u, bystander]) {
    const sid = await createSession(system, who, 'private thoughts')
    t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: who.token, body: { content: 'something personal' } })).status, 200)
  }
  t.equal((await recharge(system, u, 500)).status, 200)
  t.equal(await rows('select count(*) as n from chat.messages where user_id = $1', u.id), 2)
  const ledgerBefore = await rows('select count(*) as n from billing.transactions where user_id = $1', u.id)
  t.ok(ledgerBefore >= 2, `the user has ledger rows (${ledgerBefore})`)

  assertProblem(t, await system.request('DELETE', '/api/user/account', { token: u.token, body: { password: 'not-the-password' } }), 401, 'invalid_credentials', 'a wrong password')
  assertProblem(t, await system.request('DELETE', '/api/user/account', { token: u.token, body: {} }), 400, 'validation_failed', 'no password')
  const res = await system.request('DELETE', '/api/user/account', { token: u.token, body: { password: u.password } })
  t.equal(res.status, 200, JSON.stringify(res.body))

  await waitFor(async () => await rows('select count(*) as n from chat.sessions where user_id = $1', u.id) === 0, { what: 'chat deleted the sessions', timeoutMs: 15_000 })
  t.equal(await rows('select count(*) as n from chat.messages where user_id = $1', u.id), 0, 'and the messages')
  t.equal(await rows('select count(*) as n from chat.messages where user_id = $1', bystander.id), 2, "another user's messages stay")
  t.equal(await rows('select count(*) as n from auth.users where id = $1', u.id), 0, 'the auth row is gone')
  t.equal(await rows('select count(*) as n from billing.transactions where user_id = $1', u.id), ledgerBefore, 'the ledger is kept under the bare user id')
  assertProblem(t, await system.request('GET', '/api/sessions', { token: u.token }), 401, 'unauthorized', 'the token at the gateway')
  for (const to of ['chat', 'billing', 'auth'] as const) {
    const path = to === 'chat' ? '/api/sessions' : to === 'billing' ? '/api/user/balance' : '/api/auth/verify'
    t.equal((await system.request('GET', path, { token: u.token, to })).status, 401, `the token at ${to}`)
  }
  assertProblem(t, await system.request('POST', '/api/auth/refresh', { body: { refresh_token: u.refreshToken } }), 401, 'invalid_refresh_token', 'the refresh token')
  assertProblem(t, await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } }), 401, 'invalid_credentials', 'the old credentials')

  const again = await system.request('POST', '/api/auth/register', { body: { email: u.email, password: 'a-new-life-1', nickname: 'again' } })
  t.equal(again.status, 200, 'the email registers again')
  t.not(again.body.user_id, u.id, 'as a new account')
  const login = await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: 'a-new-life-1' } })
  await waitFor(async () => (await system.request('GET', '/api/user/balance', { token: login.body.access_token })).body?.balance === SIGNUP_BONUS, { what: 'the new account has its signup bonus' })
  t.same((await system.request('GET', '/api/sessions', { token: login.body.access_token })).body, [], 'and none of the old content')
  await assertAuditPasses(t, system)
})
