// POST /api/billing/recharge: validation, RECHARGE_POLICY self/admin, Idempotency-Key (replay, conflict, concurrency).
import t from 'tap'
import { buildTestApp, bearer, ledgerOf } from '../helper.ts'
import { balanceCacheKey as balanceKey } from '@chat-platform/contracts'
import { auditLedger } from '../../src/audit.ts'
import { loadBillingConfig } from '../../src/config.ts'

const recharge = (body: unknown, headers: Record<string, string>) => ({ method: 'POST' as const, url: '/api/billing/recharge', payload: body as object, headers })

t.test('a recharge credits once, writes a 充值 row after the signup bonus and refreshes the Redis copy', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  const res = await app.inject(recharge({ amount: 500, role: 'admin', balance: 1 }, bearer(1)))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { message: '充值成功', balance: 1500 })
  const rows = await ledgerOf(deps, 1)
  t.match(rows, [{ kind: 'signup_bonus', change_amount: 1000, balance_after: 1000 }, { kind: 'recharge', change_amount: 500, balance_after: 1500, description: '充值' }])
  t.equal(await deps.redis.get(balanceKey(1)), '1500:0')
})

t.test('amount must be an integer from 1 to 1,000,000', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  for (const amount of [0, -5, 1.5, '100', 1_000_001, null, true]) {
    const res = await app.inject(recharge({ amount }, bearer(1)))
    t.equal(res.statusCode, 400, `amount ${JSON.stringify(amount)}`)
    t.match(res.json(), { code: 'validation_failed', errors: [{ path: '/body/amount' }] })
  }
  t.equal((await app.inject(recharge({}, bearer(1)))).statusCode, 400, 'missing amount')
  t.equal((await app.inject({ method: 'POST', url: '/api/billing/recharge', headers: { ...bearer(1), 'content-type': 'application/json' }, payload: '{nope' })).statusCode, 400, 'bad JSON')
  t.equal((await app.inject(recharge({ amount: 10, user_id: 'x' }, bearer(1)))).statusCode, 400, 'user_id not an id')
  t.equal((await app.inject(recharge({ amount: 1_000_000 }, bearer(1)))).json().balance, 1_001_000, 'the maximum is accepted')
  t.equal((await ledgerOf(deps, 1)).length, 2)
})

t.test('401 without a token', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject(recharge({ amount: 5 }, {}))
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
})

t.test('RECHARGE_POLICY=self: your own balance only', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  t.equal((await app.inject(recharge({ amount: 5, user_id: 1 }, bearer(1)))).statusCode, 200, 'naming yourself is fine')
  const res = await app.inject(recharge({ amount: 5, user_id: 2 }, bearer(1)))
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'forbidden')
  t.equal((await ledgerOf(deps, 2)).length, 0, 'nothing credited to the other user')
})

t.test('RECHARGE_POLICY=admin: only an admin token, which may name user_id', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'admin' })
  const denied = await app.inject(recharge({ amount: 5 }, bearer(1)))
  t.equal(denied.statusCode, 403)
  t.equal(denied.json().code, 'forbidden')
  t.equal((await app.inject(recharge({ amount: 5, user_id: 2 }, bearer(1, { role: 'user' })))).statusCode, 403)
  const forOther = await app.inject(recharge({ amount: 70, user_id: 2 }, bearer(99, { role: 'admin' })))
  t.equal(forOther.statusCode, 200)
  t.same(forOther.json(), { message: '充值成功', balance: 1070 })
  t.equal((await app.inject(recharge({ amount: 30 }, bearer(99, { role: 'admin' })))).json().balance, 1030, 'an admin tops up itself without user_id')
  t.equal((await ledgerOf(deps, 1)).length, 0, 'the refused caller got nothing')
})

t.test('RECHARGE_POLICY defaults to admin in production and self elsewhere', async (t) => {
  const secret = { INTERNAL_TOKEN: 'production-internal-token' }
  t.equal(loadBillingConfig({ NODE_ENV: 'production', ...secret }).RECHARGE_POLICY, 'admin')
  t.equal(loadBillingConfig({ NODE_ENV: 'development' }).RECHARGE_POLICY, 'self')
  t.equal(loadBillingConfig({ NODE_ENV: 'production', RECHARGE_POLICY: 'self', ...secret }).RECHARGE_POLICY, 'self')
  t.throws(() => loadBillingConfig({ NODE_ENV: 'production' }), /INTERNAL_TOKEN: required when NODE_ENV=production/, 'no internal token: refused')
  t.throws(() => loadBillingConfig({ RECHARGE_POLICY: 'anyone' }), /RECHARGE_POLICY/)
})

t.test('Idempotency-Key: same key and body answer the first result and credit once', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  const headers = { ...bearer(1), 'idempotency-key': 'k-1' }
  const first = await app.inject(recharge({ amount: 100 }, headers))
  await app.inject(recharge({ amount: 1 }, { ...bearer(1), 'idempotency-key': 'k-other' }))
  const again = await app.inject(recharge({ amount: 100, ignored: true }, { ...bearer(1), 'idempotency-key': 'k-1' }))
  t.equal(first.statusCode, 200)
  t.equal(again.statusCode, 200)
  t.same(again.json(), first.json(), 'the first answer, not the current balance')
  t.same(first.json(), { message: '充值成功', balance: 1100 })
  const recharges = (await ledgerOf(deps, 1)).filter((r) => r.kind === 'recharge')
  t.equal(recharges.length, 2)
  t.equal((await app.inject({ method: 'GET', url: '/api/user/balance', headers: bearer(1) })).json().balance, 1101)
})

t.test('Idempotency-Key: the same key with another body is 409 idempotency_conflict', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'admin' })
  const admin = { ...bearer(50, { role: 'admin' }), 'idempotency-key': 'same' }
  t.equal((await app.inject(recharge({ amount: 100, user_id: 2 }, admin))).statusCode, 200)
  for (const body of [{ amount: 101, user_id: 2 }, { amount: 100, user_id: 3 }]) {
    const res = await app.inject(recharge(body, admin))
    t.equal(res.statusCode, 409)
    t.equal(res.json().code, 'idempotency_conflict')
  }
  t.equal((await ledgerOf(deps, 3)).length, 0)
  t.equal((await ledgerOf(deps, 2)).filter((r) => r.kind === 'recharge').length, 1)
})

t.test('Idempotency-Key: keys are per caller', async (t) => {
  const { app } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  t.equal((await app.inject(recharge({ amount: 10 }, { ...bearer(1), 'idempotency-key': 'k' }))).json().balance, 1010)
  t.equal((await app.inject(recharge({ amount: 20 }, { ...bearer(2), 'idempotency-key': 'k' }))).json().balance, 1020)
})

t.test('Idempotency-Key: 20 concurrent retries credit once and all get the same answer', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  const headers = { ...bearer(4), 'idempotency-key': 'race' }
  const answers = await Promise.all(Array.from({ length: 20 }, () => app.inject(recharge({ amount: 250 }, headers))))
  for (const res of answers) t.same(res.json(), { message: '充值成功', balance: 1250 })
  t.equal((await ledgerOf(deps, 4)).filter((r) => r.kind === 'recharge').length, 1)
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})

t.test('Idempotency-Key: an empty or over-long key is 400', async (t) => {
  const { app } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  for (const key of ['', 'x'.repeat(256), 'has space']) {
    const res = await app.inject(recharge({ amount: 5 }, { ...bearer(1), 'idempotency-key': key }))
    t.equal(res.statusCode, 400, JSON.stringify(key.slice(0, 10)))
    t.equal(res.json().code, 'validation_failed')
  }
})

t.test('keys older than the TTL are swept', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'self' })
  await app.inject(recharge({ amount: 5 }, { ...bearer(1), 'idempotency-key': 'old' }))
  await app.inject(recharge({ amount: 5 }, { ...bearer(1), 'idempotency-key': 'new' }))
  await deps.db.updateTable('idempotency_keys').set({ created_at: new Date(Date.now() - 49 * 3600_000) } as never).where('key', '=', 'old').execute()
  const { deleteExpiredIdempotencyKeys } = await import('../../src/db/repositories/idempotency-keys.ts')
  t.equal(await deleteExpiredIdempotencyKeys(deps.db, 48), 1)
  const left = await deps.db.selectFrom('idempotency_keys').select('key').execute()
  t.same(left.map((r) => r.key), ['new'])
})

t.test('Idempotency-Key retried after its record expired: the ledger row answers (replay), another body is 409, one credit', async (t) => {
  const { app, deps } = await buildTestApp(t, { RECHARGE_POLICY: 'admin' })
  const { deleteExpiredIdempotencyKeys } = await import('../../src/db/repositories/idempotency-keys.ts')
  const admin = { ...bearer(50, { role: 'admin' }), 'idempotency-key': 'expiring' }
  const first = await app.inject(recharge({ amount: 300, user_id: 6 }, admin))
  t.same(first.json(), { message: '充值成功', balance: 1300 })
  await app.inject(recharge({ amount: 5, user_id: 6 }, bearer(50, { role: 'admin' })))
  const expire = async () => {
    // As the sweeper does: the record is older than the TTL, then deleted.
    await deps.db.updateTable('idempotency_keys').set({ created_at: new Date(Date.now() - 49 * 3600_000) } as never).where('key', '=', 'expiring').execute()
    t.equal(await deleteExpiredIdempotencyKeys(deps.db, 48), 1, 'the key record is gone')
  }
  await expire()

  for (const body of [{ amount: 301, user_id: 6 }, { amount: 300, user_id: 7 }]) {
    const res = await app.inject(recharge(body, admin))
    t.equal(res.statusCode, 409, JSON.stringify(body))
    t.equal(res.json().code, 'idempotency_conflict')
  }
  t.equal((await deps.db.selectFrom('idempotency_keys').select('key').execute()).length, 0, 'a conflict claims nothing')

  const again = await app.inject(recharge({ amount: 300, user_id: 6 }, admin))
  t.equal(again.statusCode, 200)
  t.same(again.json(), first.json(), 'the first answer, read from its ledger row')
  const saved = await deps.db.selectFrom('idempotency_keys').select(['request_hash', 'response_body']).where('key', '=', 'expiring').executeTakeFirstOrThrow()
  t.same(saved.response_body, first.json(), 'the key record is written again with that answer')
  t.same((await app.inject(recharge({ amount: 300, user_id: 6 }, admin))).json(), first.json(), 'and replays from it')

  await expire()
  const concurrent = await Promise.all(Array.from({ length: 10 }, () => app.inject(recharge({ amount: 300, user_id: 6 }, admin))))
  for (const res of concurrent) t.same(res.json(), first.json(), 'concurrent retries after expiry replay too')

  t.equal((await ledgerOf(deps, 6)).filter((r) => r.kind === 'recharge' && r.change_amount === 300).length, 1, 'credited once')
  t.equal((await ledgerOf(deps, 7)).length, 0)
  t.equal((await app.inject({ method: 'GET', url: '/api/user/balance', headers: bearer(6) })).json().balance, 1305)
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})
