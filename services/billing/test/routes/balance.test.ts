// GET /api/user/balance: signup bonus on first read, once; 401 without a valid token; Redis copy written.
import t from 'tap'
import { signTestToken } from '@chat-platform/platform/testing'
import { buildTestApp, bearer, ledgerOf } from '../helper.ts'
import { balanceCacheKey as balanceKey } from '@chat-platform/contracts'

t.test('the first read opens the account with the signup bonus, once, even when reads race', async (t) => {
  const { app, deps } = await buildTestApp(t, { SIGNUP_BONUS: '1000' })
  const answers = await Promise.all(Array.from({ length: 10 }, () => app.inject({ method: 'GET', url: '/api/user/balance', headers: bearer(7) })))
  for (const res of answers) {
    t.equal(res.statusCode, 200)
    t.same(res.json(), { balance: 1000 })
  }
  const rows = await ledgerOf(deps, 7)
  t.equal(rows.length, 1)
  t.match(rows[0], { kind: 'signup_bonus', change_amount: 1000, balance_after: 1000, description: '注册赠送', source_id: '7' })
  t.equal(await deps.redis.get(balanceKey(7)), '1000:0')
  const ttl = await deps.redis.ttl(balanceKey(7))
  t.ok(ttl > 86_000 && ttl <= 86_400, 'cached for a day')
})

t.test('SIGNUP_BONUS=0 opens an empty account without a ledger row', async (t) => {
  const { app, deps } = await buildTestApp(t, { SIGNUP_BONUS: '0' })
  const res = await app.inject({ method: 'GET', url: '/api/user/balance', headers: bearer(3) })
  t.same(res.json(), { balance: 0 })
  t.equal((await ledgerOf(deps, 3)).length, 0)
})

t.test('401 problem without, with a malformed, or with a foreign token', async (t) => {
  const { app } = await buildTestApp(t)
  const foreign = signTestToken(1, {}, { issuer: 'someone-else' })
  for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: `Bearer ${foreign}` }]) {
    const res = await app.inject({ method: 'GET', url: '/api/user/balance', headers })
    t.equal(res.statusCode, 401)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.match(res.json(), { code: 'unauthorized', status: 401 })
  }
})

t.test('a Redis failure never fails the request', async (t) => {
  const { app, deps } = await buildTestApp(t)
  deps.redis.disconnect()
  const res = await app.inject({ method: 'GET', url: '/api/user/balance', headers: bearer(9) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { balance: 1000 })
})
