// Internal routes: balance read for auth/chat (opens the account), applied usage events by occurred_at.
import t from 'tap'
import { buildTestApp, usageEvent } from '../helper.ts'
import { applyUsageEvents } from '../../src/ledger.ts'
import { balanceCacheKey as balanceKey } from '@chat-platform/contracts'
import { assertInternalContracts } from '@chat-platform/platform/testing'

t.test('every internal route is a contract, with the contract\'s schemas', async (t) => {
  assertInternalContracts(t, (await buildTestApp(t)).app, 'billing')
})

t.test('GET /internal/balances/:user_id opens the account with the bonus and warms the Redis copy', async (t) => {
  const { app, deps } = await buildTestApp(t, { SIGNUP_BONUS: '300' })
  const res = await app.inject({ method: 'GET', url: '/internal/balances/12' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { user_id: 12, balance: 300, chat_applied: 0 })
  t.same((await app.inject({ method: 'GET', url: '/internal/balances/12' })).json(), { user_id: 12, balance: 300, chat_applied: 0 }, 'no second bonus')
  t.equal(await deps.redis.get(balanceKey(12)), '300:0')
  t.equal((await app.inject({ method: 'GET', url: '/internal/balances/abc' })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/internal/balances/0' })).statusCode, 400)
})

t.test('an older balance never overwrites a newer one in Redis', async (t) => {
  const { deps } = await buildTestApp(t)
  const { writeBalanceCache } = await import('../../src/balance-cache.ts')
  const log = { warn () {} }
  await writeBalanceCache(deps.redis, new Map([[5, { balance: 70, chat_applied: 4, version: 3 }]]), log)
  await writeBalanceCache(deps.redis, new Map([[5, { balance: 90, chat_applied: 2, version: 2 }]]), log)
  t.equal(await deps.redis.get(balanceKey(5)), '70:4')
})

t.test('GET /internal/usage-events lists applied usage events by occurred_at', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const early = usageEvent(1, { occurred_at: '2030-01-01T00:00:00.000Z' })
  const mid = usageEvent(2, { occurred_at: '2030-01-02T00:00:00.000Z' })
  const late = usageEvent(1, { occurred_at: '2030-01-03T00:00:00.000Z' })
  await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [early, mid, late], deps.rules))
  const q = async (qs: string) => (await app.inject({ method: 'GET', url: `/internal/usage-events?${qs}` }))
  t.same((await q('since=2030-01-01T00:00:00Z')).json(), { event_ids: [early.event_id, mid.event_id, late.event_id] })
  t.same((await q('since=2030-01-01T12:00:00Z&until=2030-01-03T00:00:00Z')).json(), { event_ids: [mid.event_id] })
  t.equal((await q('since=yesterday')).statusCode, 400)
  t.equal((await q('')).statusCode, 400)
})
