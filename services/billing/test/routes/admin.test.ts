// Admin routes of billing: adjustments (signed, with admin and reason, idempotent, unknown user 404), a user's ledger rows, and 403 for normal tokens on every admin route.
import t from 'tap'
import { balanceCacheKey } from '@chat-platform/contracts'
import { buildTestApp as buildAuth } from '../../../auth/test/helper.ts'
import { buildTestApp, bearer, ledgerOf } from '../helper.ts'
import { auditLedger } from '../../src/audit.ts'

const ADMIN = 9000
const admin = bearer(ADMIN, { role: 'admin' })
const adjust = (body: unknown, headers: Record<string, string> = admin) => ({ method: 'POST' as const, url: '/api/admin/adjustments', payload: body as object, headers })

t.test('an adjustment is a signed ledger row with the admin and the reason; a negative one may go below zero', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const plus = await app.inject(adjust({ user_id: 1, amount: 250, reason: '  补偿：服务故障 ', admin_id: 1, kind: 'recharge' }))
  t.equal(plus.statusCode, 200, plus.body)
  t.match(plus.json(), {
    id: Number,
    user_id: 1,
    change_amount: 250,
    balance_after: 1250,
    kind: 'adjustment',
    admin_id: ADMIN,
    reason: '补偿：服务故障',
    description: '管理员调整 · 补偿：服务故障',
    source_id: /^adjustment:/,
    created_at: /Z$/
  })
  const minus = await app.inject(adjust({ user_id: 1, amount: -2000, reason: 'chargeback' }))
  t.equal(minus.statusCode, 200)
  t.match(minus.json(), { change_amount: -2000, balance_after: -750, admin_id: ADMIN, reason: 'chargeback' })
  t.match(await ledgerOf(deps, 1), [{ kind: 'signup_bonus' }, { kind: 'adjustment', change_amount: 250, admin_id: ADMIN }, { kind: 'adjustment', change_amount: -2000, balance_after: -750 }])
  t.equal(await deps.redis.get(balanceCacheKey(1)), '-750:0', 'the Redis copy follows')
  // The user sees the row in their own list, with the reason in its description.
  const mine = (await app.inject({ method: 'GET', url: '/api/billing/transactions', headers: bearer(1) })).json()
  t.match(mine[0], { change_amount: -2000, description: '管理员调整 · chargeback' })
  t.notOk('admin_id' in mine[0], 'the user route does not show the admin')
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})

t.test('validation: amount a non-zero integer, a reason, a user id; nothing written', async (t) => {
  const { app, deps } = await buildTestApp(t)
  for (const body of [{ user_id: 1, amount: 0, reason: 'x' }, { user_id: 1, amount: 1.5, reason: 'x' }, { user_id: 1, amount: '5', reason: 'x' }, { user_id: 1, amount: 5 },
    { user_id: 1, amount: 5, reason: '' }, { user_id: 1, amount: 5, reason: '   ' }, { user_id: 1, amount: 5, reason: 'x'.repeat(201) }, { amount: 5, reason: 'x' },
    { user_id: 0, amount: 5, reason: 'x' }, { user_id: 1, amount: 1_000_000_001, reason: 'x' }]) {
    const res = await app.inject(adjust(body))
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'validation_failed')
  }
  t.equal((await deps.db.selectFrom('transactions').select('id').execute()).length, 0)
})

t.test('Idempotency-Key: a replay answers the same row, another body is 409, concurrent retries write one row', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const k = { ...admin, 'idempotency-key': 'adj-1' }
  const first = await app.inject(adjust({ user_id: 1, amount: 40, reason: 'goodwill' }, k))
  const again = await app.inject(adjust({ user_id: 1, amount: 40, reason: ' goodwill' }, k))
  t.equal(again.statusCode, 200)
  t.same(again.json(), first.json(), 'the same row')
  for (const body of [{ user_id: 1, amount: 41, reason: 'goodwill' }, { user_id: 2, amount: 40, reason: 'goodwill' }, { user_id: 1, amount: 40, reason: 'other' }]) {
    const res = await app.inject(adjust(body, k))
    t.equal(res.statusCode, 409, JSON.stringify(body))
    t.equal(res.json().code, 'idempotency_conflict')
  }
  // The key is the admin's: another admin's same key is another request; a recharge with the same key does not collide.
  t.equal((await app.inject(adjust({ user_id: 1, amount: 40, reason: 'goodwill' }, { ...bearer(9001, { role: 'admin' }), 'idempotency-key': 'adj-1' }))).json().balance_after, 1080)
  t.equal((await app.inject({ method: 'POST', url: '/api/billing/recharge', payload: { amount: 5 }, headers: k })).statusCode, 200)

  const race = await Promise.all(Array.from({ length: 10 }, () => app.inject(adjust({ user_id: 3, amount: -7, reason: 'race' }, { ...admin, 'idempotency-key': 'adj-race' }))))
  t.ok(race.every((r) => r.statusCode === 200))
  t.equal(new Set(race.map((r) => r.json().id)).size, 1, 'one row id in every answer')
  t.equal((await ledgerOf(deps, 3)).filter((r) => r.kind === 'adjustment').length, 1)

  // The key record swept (past IDEMPOTENCY_TTL_HOURS): the ledger row is still the first answer.
  await deps.db.deleteFrom('idempotency_keys').execute()
  const late = await app.inject(adjust({ user_id: 1, amount: 40, reason: 'goodwill' }, k))
  t.equal(late.json().id, first.json().id)
  t.equal((await app.inject(adjust({ user_id: 1, amount: 99, reason: 'goodwill' }, k))).statusCode, 409)
  t.equal((await ledgerOf(deps, 1)).filter((r) => r.kind === 'adjustment').length, 2, 'one per admin key')
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})

t.test('a user auth does not know: 404, no account opened', async (t) => {
  const INTERNAL_TOKEN = 'billing-auth-internal-token'
  const auth = await buildAuth(t, { INTERNAL_TOKEN })
  const authUrl = await auth.app.listen({ port: 0, host: '127.0.0.1' })
  const user = await auth.register()
  const { app, deps } = await buildTestApp(t, { BILLING_CHECK_USERS: 'true', AUTH_URL: authUrl, INTERNAL_TOKEN })
  const res = await app.inject(adjust({ user_id: 987_654_321, amount: 10, reason: 'typo' }))
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
  t.notOk(await deps.db.selectFrom('accounts').select('user_id').where('user_id', '=', 987_654_321).executeTakeFirst())
  t.equal((await app.inject(adjust({ user_id: user.user_id, amount: 10, reason: 'welcome' }))).json().balance_after, 1010, 'a real user is adjusted')
})

t.test('GET /api/admin/users/{id}/transactions: that user\'s rows with kind, source and provenance, paginated', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  for (let i = 0; i < 4; i++) await app.inject({ method: 'POST', url: '/api/billing/recharge', payload: { amount: 10 + i }, headers: bearer(5) })
  await app.inject(adjust({ user_id: 5, amount: -3, reason: 'fix' }))
  await app.inject({ method: 'POST', url: '/api/billing/recharge', payload: { amount: 1 }, headers: bearer(6) })
  const page = await app.inject({ method: 'GET', url: '/api/admin/users/5/transactions?limit=2', headers: admin })
  t.equal(page.statusCode, 200)
  const rows = page.json()
  t.equal(rows.length, 2)
  t.match(rows[0], { user_id: 5, kind: 'adjustment', change_amount: -3, admin_id: ADMIN, reason: 'fix', model: null })
  t.match(rows[1], { user_id: 5, kind: 'recharge', change_amount: 13, admin_id: null, reason: null, source_id: /^recharge:/ })
  const rest = (await app.inject({ method: 'GET', url: `/api/admin/users/5/transactions?before_id=${rows[1].id}`, headers: admin })).json()
  t.same(rest.map((r: { change_amount: number }) => r.change_amount), [12, 11, 10, 1000])
  t.ok(rest.every((r: { user_id: number }) => r.user_id === 5), 'only that user')
  t.same((await app.inject({ method: 'GET', url: '/api/admin/users/77/transactions', headers: admin })).json(), [], 'a user without rows: empty')
  t.equal((await app.inject({ method: 'GET', url: '/api/admin/users/abc/transactions', headers: admin })).statusCode, 400)
  t.equal((await ledgerOf(deps, 77)).length, 0, 'reading opens no account')
})

t.test('a normal token is 403 on every admin route of billing (and 401 without one); nothing changes', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const routes = [
    { method: 'POST' as const, url: '/api/admin/adjustments', payload: { user_id: 1, amount: 5, reason: 'x' } },
    { method: 'POST' as const, url: '/api/admin/redemption-codes', payload: { tokens: 5, count: 1 } },
    { method: 'GET' as const, url: '/api/admin/users/1/transactions' },
    { method: 'GET' as const, url: '/api/admin/usage' }
  ]
  for (const route of routes) {
    for (const headers of [bearer(1), bearer(1, { role: 'user' }), bearer(1, { role: 'ADMIN' })]) {
      const res = await app.inject({ ...route, headers })
      t.equal(res.statusCode, 403, `${route.method} ${route.url}`)
      t.equal(res.json().code, 'forbidden')
    }
    t.equal((await app.inject(route)).statusCode, 401, `${route.method} ${route.url} without a token`)
  }
  t.equal((await deps.db.selectFrom('transactions').select('id').execute()).length, 0)
  t.equal((await deps.db.selectFrom('redemption_batches').select('id').execute()).length, 0)
})
