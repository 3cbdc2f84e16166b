// GET /api/billing/transactions: own rows only, newest first, limit/before_id pagination, validation.
import t from 'tap'
import { buildTestApp, bearer } from '../helper.ts'

t.test('lists the caller\'s rows newest first with the DESIGN fields only, paginated', async (t) => {
  const { app } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  for (const amount of [1, 2, 3, 4]) await app.inject({ method: 'POST', url: '/api/billing/recharge', headers: bearer(1), payload: { amount } })
  await app.inject({ method: 'POST', url: '/api/billing/recharge', headers: bearer(2), payload: { amount: 9 } })

  const all = (await app.inject({ method: 'GET', url: '/api/billing/transactions', headers: bearer(1) })).json()
  t.equal(all.length, 5)
  t.same(all.map((r: { change_amount: number }) => r.change_amount), [4, 3, 2, 1, 1000])
  t.same(all.map((r: { balance_after: number }) => r.balance_after), [1010, 1006, 1003, 1001, 1000])
  t.same(Object.keys(all[0]).sort(), ['balance_after', 'change_amount', 'created_at', 'description', 'id', 'user_id'])
  t.match(all[0].created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  t.ok(all.every((r: { user_id: number }) => r.user_id === 1), 'never another user\'s rows')
  t.equal(all[4].description, '注册赠送')
  t.equal(all[0].description, '充值')

  const page1 = (await app.inject({ method: 'GET', url: '/api/billing/transactions?limit=2', headers: bearer(1) })).json()
  t.same(page1.map((r: { id: number }) => r.id), all.slice(0, 2).map((r: { id: number }) => r.id))
  const page2 = (await app.inject({ method: 'GET', url: `/api/billing/transactions?limit=2&before_id=${page1[1].id}`, headers: bearer(1) })).json()
  t.same(page2.map((r: { id: number }) => r.id), all.slice(2, 4).map((r: { id: number }) => r.id))
})

t.test('a user without an account has an empty list', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/api/billing/transactions', headers: bearer(77) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), [])
})

t.test('bad limit or before_id is 400; no token is 401', async (t) => {
  const { app } = await buildTestApp(t)
  for (const q of ['limit=0', 'limit=201', 'limit=abc', 'before_id=0', 'before_id=-1', 'limit=1.5']) {
    const res = await app.inject({ method: 'GET', url: `/api/billing/transactions?${q}`, headers: bearer(1) })
    t.equal(res.statusCode, 400, q)
    t.equal(res.json().code, 'validation_failed')
  }
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/transactions' })).statusCode, 401)
})
