// Redemption codes: batches made by admins (shown once, stored hashed), redeemed once under concurrency, expiry, the failure throttle.
import { createHash } from 'node:crypto'
import t from 'tap'
import { balanceCacheKey } from '@chat-platform/contracts'
import { buildTestApp, bearer, ledgerOf } from '../helper.ts'
import { auditLedger } from '../../src/audit.ts'
import { redeemThrottleKey } from '../../src/redeem-throttle.ts'

const ADMIN = 9000
const admin = bearer(ADMIN, { role: 'admin' })
const makeCodes = (body: unknown, headers = admin) => ({ method: 'POST' as const, url: '/api/admin/redemption-codes', payload: body as object, headers })
const redeem = (userId: number, code: string) => ({ method: 'POST' as const, url: '/api/billing/redeem', payload: { code }, headers: bearer(userId) })
const sha = (s: string) => createHash('sha256').update(s).digest()
const CODE = /^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){3}$/

t.test('a batch: distinct 100-bit codes shown once, only their sha-256 stored, the batch row keeps admin, tokens, expiry, note', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const expires = new Date(Date.now() + 86_400_000).toISOString()
  const res = await app.inject(makeCodes({ tokens: 500, count: 1000, expires_at: expires, note: '  双十二活动 ', role: 'user' }))
  t.equal(res.statusCode, 200)
  const { batch_id: batchId, codes } = res.json() as { batch_id: number, codes: string[] }
  t.equal(codes.length, 1000)
  t.equal(new Set(codes).size, 1000, 'all distinct')
  t.ok(codes.every((c) => CODE.test(c)), 'XXXXX-XXXXX-XXXXX-XXXXX in Crockford base32')
  t.match(await deps.db.selectFrom('redemption_batches').selectAll().where('id', '=', batchId).executeTakeFirst(),
    { admin_id: ADMIN, tokens: 500, count: 1000, expires_at: new Date(expires), note: '双十二活动' })

  const stored = await deps.db.selectFrom('redemption_codes').selectAll().where('batch_id', '=', batchId).execute()
  t.equal(stored.length, 1000)
  const hashes = new Set(stored.map((r) => r.code_hash.toString('hex')))
  t.ok(codes.every((c) => hashes.has(sha(c.replaceAll('-', '')).toString('hex'))), 'each code is stored as the sha-256 of its canonical form')
  // Nothing in the schema holds a code in clear.
  const dump = JSON.stringify(await deps.db.selectFrom('redemption_codes').selectAll().execute()) + JSON.stringify(await deps.db.selectFrom('redemption_batches').selectAll().execute())
  t.notOk(codes.some((c) => dump.includes(c) || dump.includes(c.replaceAll('-', ''))), 'no code in clear in the tables')

  // A second batch never repeats a code of the first (the hashes are unique across batches).
  const again = (await app.inject(makeCodes({ tokens: 1, count: 1000 }))).json() as { codes: string[] }
  t.notOk(again.codes.some((c) => codes.includes(c)))
})

t.test('validation: tokens, count 1–1000, expires_at in the future; nothing made', async (t) => {
  const { app, deps } = await buildTestApp(t)
  for (const body of [{ tokens: 0, count: 1 }, { tokens: 10, count: 0 }, { tokens: 10, count: 1001 }, { tokens: 1.5, count: 1 }, { count: 1 }, { tokens: 10 },
    { tokens: 10, count: 1, expires_at: 'tomorrow' }, { tokens: 10, count: 1, expires_at: new Date(Date.now() - 1000).toISOString() }, { tokens: 10, count: 1, note: 'x'.repeat(201) }]) {
    const res = await app.inject(makeCodes(body))
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'validation_failed')
  }
  t.equal((await deps.db.selectFrom('redemption_batches').select('id').execute()).length, 0)
})

t.test('redeem: typed in any case, with or without dashes and look-alikes; credited once with a row naming the batch; used → 409', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const { batch_id: batchId, codes } = (await app.inject(makeCodes({ tokens: 300, count: 2 }))).json() as { batch_id: number, codes: string[] }
  // lower case, spaces instead of dashes, and O/I/L where 0/1 are (Crockford reads them alike)
  const typed = ` ${codes[0].toLowerCase().replaceAll('-', ' ').replaceAll('0', 'o').replaceAll('1', 'l')} `
  const res = await app.inject(redeem(1, typed))
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), { message: '兑换成功', balance: 1300, tokens: 300 })
  const code = await deps.db.selectFrom('redemption_codes').selectAll().where('code_hash', '=', sha(codes[0].replaceAll('-', ''))).executeTakeFirstOrThrow()
  t.match(code, { used_by: 1, used_at: Date })
  t.match(await ledgerOf(deps, 1), [{ kind: 'signup_bonus' }, { kind: 'redemption', change_amount: 300, balance_after: 1300, source_id: String(code.id), description: `兑换码 · 批次 #${batchId}` }])
  t.equal(await deps.redis.get(balanceCacheKey(1)), '1300:0', 'the Redis copy refreshed')

  for (const [user, attempt] of [[1, codes[0]], [2, codes[0]], [2, codes[0].replaceAll('-', '')]] as const) {
    const used = await app.inject(redeem(user, attempt))
    t.equal(used.statusCode, 409)
    t.equal(used.json().code, 'redemption_used')
  }
  t.equal((await ledgerOf(deps, 2)).filter((r) => r.kind === 'redemption').length, 0)

  for (const wrong of ['AAAAA-AAAAA-AAAAA-AAAAA', codes[1].slice(0, -1), `${codes[1]}0`, 'UUUUU-UUUUU-UUUUU-UUUUU', '!']) {
    const res = await app.inject(redeem(3, wrong))
    t.equal(res.statusCode, 404, wrong)
    t.equal(res.json().code, 'not_found')
  }
  t.equal((await app.inject({ method: 'POST', url: '/api/billing/redeem', payload: {}, headers: bearer(3) })).statusCode, 400, 'no code')
  t.equal((await app.inject({ method: 'POST', url: '/api/billing/redeem', payload: { code: codes[1] } })).statusCode, 401, 'no token')
  t.equal((await app.inject(redeem(3, codes[1]))).statusCode, 200, 'the other code still works')
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})

t.test('20 concurrent redeems of one code (20 users, and one user 20 times): exactly one credit, the rest 409', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const { codes } = (await app.inject(makeCodes({ tokens: 777, count: 2 }))).json() as { codes: string[] }
  const users = Array.from({ length: 20 }, (_, i) => 100 + i)
  const answers = await Promise.all(users.map((u) => app.inject(redeem(u, codes[0]))))
  t.equal(answers.filter((r) => r.statusCode === 200).length, 1, 'one winner')
  t.ok(answers.filter((r) => r.statusCode !== 200).every((r) => r.statusCode === 409 && r.json().code === 'redemption_used'), 'the others: 409 redemption_used')
  const rows = await deps.db.selectFrom('transactions').selectAll().where('kind', '=', 'redemption').execute()
  t.equal(rows.length, 1)
  t.equal(rows[0].change_amount, 777)

  const same = await Promise.all(Array.from({ length: 20 }, () => app.inject(redeem(200, codes[1]))))
  t.equal(same.filter((r) => r.statusCode === 200).length, 1)
  // One user's parallel attempts also meet the failure throttle (10 counted at once): the rest are 409 or 429.
  t.ok(same.filter((r) => r.statusCode !== 200).every((r) => r.statusCode === 409 || r.statusCode === 429))
  t.ok(same.filter((r) => r.statusCode === 409).length >= 9, 'at least nine verdicts of used')
  t.equal((await ledgerOf(deps, 200)).filter((r) => r.kind === 'redemption').length, 1)
  const acc = await deps.db.selectFrom('accounts').select('balance').where('user_id', '=', 200).executeTakeFirstOrThrow()
  t.equal(acc.balance, 1777)
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})

t.test('an expired batch: 409 redemption_expired, nothing credited; a batch without expiry never expires', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const soon = (await app.inject(makeCodes({ tokens: 50, count: 1, expires_at: new Date(Date.now() + 3600_000).toISOString() }))).json() as { batch_id: number, codes: string[] }
  const forever = (await app.inject(makeCodes({ tokens: 60, count: 1 }))).json() as { codes: string[] }
  // The hour passes.
  await deps.db.updateTable('redemption_batches').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', soon.batch_id).execute()
  const res = await app.inject(redeem(1, soon.codes[0]))
  t.equal(res.statusCode, 409)
  t.equal(res.json().code, 'redemption_expired')
  t.match(await deps.db.selectFrom('redemption_codes').selectAll().where('batch_id', '=', soon.batch_id).executeTakeFirst(), { used_by: null, used_at: null })
  t.equal((await ledgerOf(deps, 1)).length, 0, 'no account opened, nothing credited')
  t.equal((await app.inject(redeem(1, forever.codes[0]))).json().balance, 1060)
})

t.test('failed attempts are throttled per user (429 + Retry-After, counted before the lookup so parallel guesses are bounded); a success does not count', async (t) => {
  const { app, deps } = await buildTestApp(t, { REDEEM_MAX_FAILURES: '3', REDEEM_FAILURE_WINDOW_SECONDS: '600' })
  const { codes } = (await app.inject(makeCodes({ tokens: 10, count: 3 }))).json() as { codes: string[] }
  const wrong = 'AAAAA-AAAAA-AAAAA-AAAAA'

  t.equal((await app.inject(redeem(1, codes[0]))).statusCode, 200)
  t.equal((await app.inject(redeem(1, wrong))).statusCode, 404)
  t.equal((await app.inject(redeem(1, codes[0]))).statusCode, 409, 'a used code is a failure too')
  t.equal((await app.inject(redeem(1, codes[1]))).statusCode, 200, 'successes give their attempt back: two failures so far')
  t.equal((await app.inject(redeem(1, wrong))).statusCode, 404, 'the third failure')
  const refused = await app.inject(redeem(1, codes[2]))
  t.equal(refused.statusCode, 429, 'even a valid code is refused while throttled')
  t.equal(refused.json().code, 'rate_limited')
  const retry = Number(refused.headers['retry-after'])
  t.ok(retry > 590 && retry <= 600, `Retry-After ${retry}`)
  t.equal((await deps.db.selectFrom('redemption_codes').select('used_at').where('code_hash', '=', sha(codes[2].replaceAll('-', ''))).executeTakeFirstOrThrow()).used_at, null, 'not redeemed')

  // Another user is not affected; ten parallel guesses by them get exactly three verdicts.
  const burst = await Promise.all(Array.from({ length: 10 }, () => app.inject(redeem(2, wrong))))
  t.equal(burst.filter((r) => r.statusCode === 404).length, 3)
  t.equal(burst.filter((r) => r.statusCode === 429).length, 7)

  // The window ends: the user may try again.
  await deps.redis.del(redeemThrottleKey(1))
  t.equal((await app.inject(redeem(1, codes[2]))).statusCode, 200)
})

t.test('a normal token gets 403 on the admin route, and no batch is made; 401 without a token', async (t) => {
  const { app, deps } = await buildTestApp(t)
  for (const headers of [bearer(1), bearer(1, { role: 'user' }), bearer(1, { role: 'Admin' }), bearer(1, { roles: ['admin'] })]) {
    const res = await app.inject(makeCodes({ tokens: 10, count: 1 }, headers))
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'forbidden')
  }
  t.equal((await app.inject({ method: 'POST', url: '/api/admin/redemption-codes', payload: { tokens: 10, count: 1 } })).statusCode, 401)
  t.equal((await deps.db.selectFrom('redemption_batches').select('id').execute()).length, 0)
})

t.test('billing:audit finds a used code without its credit and a credit without its code', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const { codes } = (await app.inject(makeCodes({ tokens: 40, count: 3 }))).json() as { codes: string[] }
  t.equal((await app.inject(redeem(1, codes[0]))).statusCode, 200)
  t.equal((await auditLedger(deps.db)).breaks.length, 0, 'clean after a redemption')
  // A code marked used that credited nothing, and a redemption row whose code was never used.
  await deps.db.updateTable('redemption_codes').set({ used_by: 2, used_at: new Date() }).where('code_hash', '=', sha(codes[1].replaceAll('-', ''))).execute()
  const unused = await deps.db.selectFrom('redemption_codes').select('id').where('code_hash', '=', sha(codes[2].replaceAll('-', ''))).executeTakeFirstOrThrow()
  await deps.db.insertInto('transactions').values({ user_id: 1, change_amount: 40, balance_after: 1080, kind: 'redemption', description: 'planted', source_id: String(unused.id) } as never).execute()
  await deps.db.updateTable('accounts').set({ balance: 1080 } as never).where('user_id', '=', 1).execute()
  const report = await auditLedger(deps.db)
  t.match(report.breaks.filter((b) => b.check.startsWith('rede')), [
    { check: 'redeemed_code_credited_once', user_id: 2, detail: /has 0 redemption rows/ },
    { check: 'redemption_row_has_used_code', user_id: 1, detail: /a code not marked used/ }
  ])
})
