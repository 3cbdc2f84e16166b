// The usage report: totals equal the ledger's usage rows per day (USAGE_TIMEZONE, a day boundary included) and per model, the caller's only or everyone's (admin); range checks; the index.
import t from 'tap'
import { sql } from 'kysely'
import { buildTestApp, bearer, usageEvent } from '../helper.ts'
import { applyUsageEvents } from '../../src/ledger.ts'
import { auditLedger } from '../../src/audit.ts'
import { usageReportQuery } from '../../src/usage-report.ts'
import type { BillingDeps } from '../../src/deps.ts'

const ADMIN = 9000
const admin = bearer(ADMIN, { role: 'admin' })
const PRICES = '{"gpt-4o-mini":{"input":0.5,"output":1.5},"big":{"input":3,"output":6}}'

/** Applies usage events through the ledger, then dates each row `at` (the time billing applied it). */
async function charge (deps: BillingDeps, rows: { user: number, model: string, prompt: number, completion: number, at: string }[]) {
  const events = rows.map((r) => usageEvent(r.user, { model: r.model, prompt_tokens: r.prompt, completion_tokens: r.completion }))
  await deps.db.transaction().execute((trx) => applyUsageEvents(trx, events, deps.rules))
  for (const [i, e] of events.entries()) {
    await deps.db.updateTable('transactions').set({ created_at: new Date(rows[i].at) } as never).where('kind', '=', 'usage').where('source_id', '=', e.event_id).execute()
  }
}

const SAMPLE = [
  // 23:59:59 on 4 December in Shanghai (UTC+8) …
  { user: 1, model: 'gpt-4o-mini', prompt: 100, completion: 20, at: '2026-12-04T15:59:59.000Z' },
  // … and midnight of the 5th: another day there, the same day in UTC.
  { user: 1, model: 'gpt-4o-mini', prompt: 7, completion: 3, at: '2026-12-04T16:00:00.000Z' },
  { user: 1, model: 'big', prompt: 10, completion: 1, at: '2026-12-05T10:00:00.000Z' },
  { user: 1, model: 'big', prompt: 5, completion: 5, at: '2026-12-06T01:00:00.000Z' },
  { user: 2, model: 'big', prompt: 1000, completion: 1000, at: '2026-12-05T03:00:00.000Z' },
  // outside the range asked for
  { user: 1, model: 'gpt-4o-mini', prompt: 9, completion: 9, at: '2026-10-01T00:00:00.000Z' }
]
const RANGE = 'from=2026-12-01T00:00:00Z&to=2026-12-31T00:00:00Z'

/** The ledger's own sums of usage rows, straight from the table: what every report must add up to. */
async function ledgerTotals (deps: BillingDeps, userId: number | undefined, from: string, to: string) {
  const { rows } = await sql<{ exchanges: number, prompt_tokens: number, completion_tokens: number, amount: number }>`
    select count(*)::int8 as exchanges, sum(prompt_tokens)::int8 as prompt_tokens, sum(completion_tokens)::int8 as completion_tokens, (-sum(change_amount))::int8 as amount
    from transactions where kind = 'usage' and created_at >= ${new Date(from)} and created_at < ${new Date(to)}
    ${userId === undefined ? sql`` : sql`and user_id = ${userId}`}`.execute(deps.db)
  return rows[0]
}
const sum = (rows: { exchanges: number, prompt_tokens: number, completion_tokens: number, amount: number }[]) =>
  rows.reduce((a, r) => ({ exchanges: a.exchanges + r.exchanges, prompt_tokens: a.prompt_tokens + r.prompt_tokens, completion_tokens: a.completion_tokens + r.completion_tokens, amount: a.amount + r.amount }),
    { exchanges: 0, prompt_tokens: 0, completion_tokens: 0, amount: 0 })

t.test('per day in Asia/Shanghai and per model: the caller\'s rows only, totals equal to the ledger', async (t) => {
  const { app, deps } = await buildTestApp(t, { MODEL_PRICES: PRICES })
  await charge(deps, SAMPLE)
  const byDay = await app.inject({ method: 'GET', url: `/api/billing/usage?${RANGE}&group_by=day`, headers: bearer(1) })
  t.equal(byDay.statusCode, 200, byDay.body)
  t.same(byDay.json(), [
    { key: '2026-12-04', exchanges: 1, prompt_tokens: 100, completion_tokens: 20, amount: 80 },
    { key: '2026-12-05', exchanges: 2, prompt_tokens: 17, completion_tokens: 4, amount: 8 + 36 },
    { key: '2026-12-06', exchanges: 1, prompt_tokens: 5, completion_tokens: 5, amount: 45 }
  ])
  const byModel = (await app.inject({ method: 'GET', url: `/api/billing/usage?${RANGE}&group_by=model`, headers: bearer(1) })).json()
  t.same(byModel, [
    { key: 'big', exchanges: 2, prompt_tokens: 15, completion_tokens: 6, amount: 81 },
    { key: 'gpt-4o-mini', exchanges: 2, prompt_tokens: 107, completion_tokens: 23, amount: 88 }
  ])
  const truth = await ledgerTotals(deps, 1, '2026-12-01T00:00:00Z', '2026-12-31T00:00:00Z')
  t.same(sum(byDay.json()), truth, 'day rows add up to the ledger')
  t.same(sum(byModel), truth, 'model rows add up to the ledger')

  // The admin's report is everyone's.
  const all = (await app.inject({ method: 'GET', url: `/api/admin/usage?${RANGE}&group_by=model`, headers: admin })).json()
  t.same(sum(all), await ledgerTotals(deps, undefined, '2026-12-01T00:00:00Z', '2026-12-31T00:00:00Z'))
  t.match(all, [{ key: 'big', exchanges: 3 }, { key: 'gpt-4o-mini', exchanges: 2 }])
  const allDays = (await app.inject({ method: 'GET', url: `/api/admin/usage?${RANGE}`, headers: admin })).json()
  t.same(allDays.map((r: { key: string }) => r.key), ['2026-12-04', '2026-12-05', '2026-12-06'], 'group_by defaults to day')
  t.same(sum(allDays), sum(all))
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})

t.test('an automatic title is charged and summed, but is not an exchange; its ledger row says purpose title', async (t) => {
  const { app, deps } = await buildTestApp(t, { MODEL_PRICES: PRICES })
  const exchange = usageEvent(3, { model: 'big', prompt_tokens: 10, completion_tokens: 2 })
  const title = usageEvent(3, { model: 'big', prompt_tokens: 30, completion_tokens: 4, purpose: 'title', message_id: null })
  const old = usageEvent(3, { model: 'big', prompt_tokens: 1, completion_tokens: 1 })
  delete (old as { purpose?: string }).purpose
  await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [exchange, title, old], deps.rules))
  const purposes = await deps.db.selectFrom('transactions').select(['source_id', 'purpose']).where('user_id', '=', 3).where('kind', '=', 'usage').execute()
  t.same(Object.fromEntries(purposes.map((r) => [r.source_id, r.purpose])), { [exchange.event_id]: 'exchange', [title.event_id]: 'title', [old.event_id]: 'exchange' })
  const report = (await app.inject({ method: 'GET', url: '/api/billing/usage?group_by=model', headers: bearer(3) })).json()
  t.same(report, [{ key: 'big', exchanges: 2, prompt_tokens: 41, completion_tokens: 7, amount: (3 * 10 + 6 * 2) + (3 * 30 + 6 * 4) + (3 + 6) }])
  t.equal((await auditLedger(deps.db)).breaks.length, 0, 'audit clean')
})

t.test('USAGE_TIMEZONE moves the day boundary; a date bound is that day\'s midnight there', async (t) => {
  const { app, deps } = await buildTestApp(t, { MODEL_PRICES: PRICES, USAGE_TIMEZONE: 'UTC' })
  await charge(deps, SAMPLE)
  const utc = (await app.inject({ method: 'GET', url: `/api/billing/usage?${RANGE}`, headers: bearer(1) })).json()
  t.same(utc.map((r: { key: string, exchanges: number }) => [r.key, r.exchanges]), [['2026-12-04', 2], ['2026-12-05', 1], ['2026-12-06', 1]])

  // Dates: [5 December, 6 December) in UTC.
  const day = (await app.inject({ method: 'GET', url: '/api/billing/usage?from=2026-12-05&to=2026-12-06', headers: bearer(1) })).json()
  t.same(day.map((r: { key: string, exchanges: number }) => [r.key, r.exchanges]), [['2026-12-05', 1]], 'the 5th in UTC')
})

t.test('a date range in Asia/Shanghai: from=2026-12-05 starts at 16:00Z the day before', async (t) => {
  const { app, deps } = await buildTestApp(t, { MODEL_PRICES: PRICES })
  await charge(deps, SAMPLE)
  const res = (await app.inject({ method: 'GET', url: '/api/billing/usage?from=2026-12-05&to=2026-12-06&group_by=day', headers: bearer(1) })).json()
  t.same(res, [{ key: '2026-12-05', exchanges: 2, prompt_tokens: 17, completion_tokens: 4, amount: 44 }])
  t.same(sum(res), await ledgerTotals(deps, 1, '2026-12-04T16:00:00Z', '2026-12-05T16:00:00Z'))
})

t.test('defaults and validation: the last 30 days; from before to, at most 366 days, known group_by, real dates', async (t) => {
  const { app, deps } = await buildTestApp(t)
  const now = Date.now()
  await charge(deps, [
    { user: 1, model: 'm', prompt: 1, completion: 1, at: new Date(now - 3600_000).toISOString() },
    { user: 1, model: 'm', prompt: 2, completion: 2, at: new Date(now - 29 * 86_400_000).toISOString() },
    { user: 1, model: 'm', prompt: 4, completion: 4, at: new Date(now - 31 * 86_400_000).toISOString() }
  ])
  const res = await app.inject({ method: 'GET', url: '/api/billing/usage?group_by=model', headers: bearer(1) })
  t.same(res.json(), [{ key: 'm', exchanges: 2, prompt_tokens: 3, completion_tokens: 3, amount: 6 }], 'rows of the last 30 days')
  t.same((await app.inject({ method: 'GET', url: '/api/billing/usage', headers: bearer(2) })).json(), [], 'nothing used: an empty list')

  for (const q of ['from=2026-12-05&to=2026-12-05', 'from=2026-12-06&to=2026-12-05', 'from=2025-01-01&to=2026-12-05', 'group_by=week',
    'from=2026-13-01', 'from=yesterday', 'to=2026-02-30', 'from=2026-12-05T25:00:00Z']) {
    const bad = await app.inject({ method: 'GET', url: `/api/billing/usage?${q}`, headers: bearer(1) })
    t.equal(bad.statusCode, 400, q)
    t.equal(bad.json().code, 'validation_failed', q)
  }
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/usage?from=2025-12-05&to=2026-12-06', headers: bearer(1) })).statusCode, 200, '366 days are allowed')
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/usage' })).statusCode, 401)
})

t.test('a user with 100k usage rows among others: the report reads the partial index, fast', async (t) => {
  const { app, deps } = await buildTestApp(t)
  // Rows written straight into the table (the ledger's chain is not what this measures): 100k for user 1, 100k for others.
  await sql`insert into accounts (user_id, balance, version) select g, 0, 0 from generate_series(1, 1001) g`.execute(deps.db)
  await sql`
    insert into transactions (user_id, change_amount, balance_after, kind, description, source_id, model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source)
    select case when g % 2 = 0 then 1 else 2 + g % 1000 end, -3, 0, 'usage', 'x', 'bulk-' || g, case when g % 3 = 0 then 'a' else 'b' end, 2, 1, 1, 1, 'provider'
    from generate_series(1, 200000) g`.execute(deps.db)
  await sql`update transactions set created_at = now() - make_interval(secs => (id % 2000000))`.execute(deps.db)
  await sql`vacuum analyze transactions`.execute(deps.db)

  const from = new Date(Date.now() - 30 * 86_400_000)
  const to = new Date()
  for (const [what, opts, index] of [
    // A user with 100 of the 200k rows. (For user 1, half the table, a scan of the whole table may rightly cost less:
    // and while other tests hold snapshots open, VACUUM cannot mark pages all-visible, so the planner prices the index
    // with heap fetches. User 1's case is timed below instead.)
    ['a caller', { userId: 3, from, to, groupBy: 'day' as const, tz: 'Asia/Shanghai' }, 'transactions_usage_user_created'],
    ['everyone', { from, to: new Date(from.getTime() + 86_400_000), groupBy: 'model' as const, tz: 'Asia/Shanghai' }, 'transactions_usage_created']
  ] as const) {
    const { rows } = await sql<{ 'QUERY PLAN': unknown }>`explain (format json) ${usageReportQuery(opts)}`.execute(deps.db)
    const plan = JSON.stringify(rows[0]['QUERY PLAN'])
    t.match(plan, new RegExp(`"Index Name":"${index}"`), `${what}: the plan uses ${index}`)
    t.notMatch(plan, /"Node Type":"Seq Scan"/, `${what}: no sequential scan`)
  }
  const started = performance.now()
  const res = await app.inject({ method: 'GET', url: '/api/billing/usage?group_by=model', headers: bearer(1) })
  const ms = performance.now() - started
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(sum(body).exchanges, (await ledgerTotals(deps, 1, from.toISOString(), new Date().toISOString())).exchanges)
  t.ok(sum(body).exchanges > 50_000, `${sum(body).exchanges} rows summed`)
  t.ok(ms < 2000, `answered in ${ms.toFixed(0)} ms`)
  t.comment(`100k-row user, 30 days by model: ${ms.toFixed(0)} ms`)
})
