// Ledger rules under concurrency: recharges and usage on one account at once leave an exact balance and an
// unbroken chain; pricing is exact; batches apply once.
import t from 'tap'
import { publisher, testEnv, testDeps, usageEvent, bearer, ledgerOf } from './helper.ts'
import { waitFor } from '@chat-platform/platform/testing'
import { loadBillingConfig } from '../src/config.ts'
import { buildApp } from '../src/app.ts'
import { auditLedger } from '../src/audit.ts'
import { applyUsageEvents } from '../src/ledger.ts'
import { priceTokens, parseModelPrices, ratiosFor, usageDescription } from '../src/pricing.ts'

t.test('50 concurrent recharges and 50 usage events on one account: exact balance, unbroken chain', async (t) => {
  const env = await testEnv(t, { RECHARGE_POLICY: 'self', BILLING_BATCH_SIZE: '5' })
  const { deps } = await testDeps(t, env)
  const app = buildApp(deps, loadBillingConfig(env))
  t.teardown(() => app.close())
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const events = Array.from({ length: 50 }, (_, i) => usageEvent(42, { prompt_tokens: i + 1, completion_tokens: 3 }))
  // Half of the usage goes straight to the apply code in its own transactions, half through JetStream.
  await Promise.all([
    ...Array.from({ length: 50 }, (_, i) => app.inject({ method: 'POST', url: '/api/billing/recharge', headers: bearer(42), payload: { amount: 10 + i } })),
    ...events.slice(0, 25).map((ev) => pub.usage(ev)),
    ...events.slice(25).map((ev) => deps.db.transaction().execute((trx) => applyUsageEvents(trx, [ev], deps.rules)))
  ])
  await waitFor(async () => (await ledgerOf(deps, 42)).length === 101, { what: '101 ledger rows', timeoutMs: 20_000 })
  const recharged = Array.from({ length: 50 }, (_, i) => 10 + i).reduce((a, b) => a + b, 0)
  const spent = events.reduce((a, ev) => a + ev.prompt_tokens + ev.completion_tokens, 0)
  const balance = (await app.inject({ method: 'GET', url: '/api/user/balance', headers: bearer(42) })).json().balance
  t.equal(balance, 1000 + recharged - spent)
  const rows = await ledgerOf(deps, 42)
  let running = 0
  for (const r of rows) {
    running += r.change_amount
    if (r.balance_after !== running) { t.fail(`chain broken at row ${r.id}`); break }
  }
  t.equal(running, balance)
  t.same((await auditLedger(deps.db)).breaks, [])
})

t.test('one batch with many users and repeated events applies each once, in order per user', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  const evs = [usageEvent(2, { prompt_tokens: 5 }), usageEvent(1, { prompt_tokens: 7 }), usageEvent(2, { prompt_tokens: 1, completion_tokens: 0 })]
  const first = await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [...evs, evs[0]], deps.rules))
  t.same([...first.outcomes.values()], ['applied', 'applied', 'applied'])
  t.same(first.balances.get(2), { balance: 1000 - 10 - 1, chat_applied: 0, version: 3 })
  const second = await deps.db.transaction().execute((trx) => applyUsageEvents(trx, evs, deps.rules))
  t.same([...second.outcomes.values()], ['duplicate', 'duplicate', 'duplicate'])
  t.equal(second.balances.size, 0)
  t.match(await ledgerOf(deps, 2), [{ kind: 'signup_bonus', balance_after: 1000 }, { change_amount: -10, balance_after: 990 }, { change_amount: -1, balance_after: 989 }])
  const zero = usageEvent(3, { prompt_tokens: 0, completion_tokens: 0 })
  await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [zero], deps.rules))
  t.match(await ledgerOf(deps, 3), [{ kind: 'signup_bonus' }], 'a free exchange leaves no usage row (but opens the account)')
  t.same((await auditLedger(deps.db)).breaks, [])
})

t.test('chat_applied sums the applied events\' estimated_amount in the same commit as the balance; duplicates and rollbacks add nothing', async (t) => {
  const env = await testEnv(t, { SIGNUP_BONUS: '100', MODEL_PRICES: '{"free":{"input":0,"output":0}}' })
  const { deps } = await testDeps(t, env)
  const account = () => deps.db.selectFrom('accounts').select(['balance', 'chat_applied']).where('user_id', '=', 9).executeTakeFirstOrThrow()
  const a = usageEvent(9, { prompt_tokens: 10, completion_tokens: 5, estimated_amount: 15 })
  const b = usageEvent(9, { prompt_tokens: 3, completion_tokens: 1, estimated_amount: 4 })
  const old = usageEvent(9, { prompt_tokens: 2, completion_tokens: 0 })
  const first = await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [a, b, a, old], deps.rules))
  t.same(first.balances.get(9), { balance: 100 - 15 - 4 - 2, chat_applied: 19, version: 4 }, 'the pair the Redis copy gets comes from one UPDATE')
  t.same(await account(), { balance: 79, chat_applied: 19 })
  await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [a, b], deps.rules))
  t.same(await account(), { balance: 79, chat_applied: 19 }, 'a replayed event adds nothing')
  // A batch that fails after applying rolls back chat_applied with the balance.
  await t.rejects(deps.db.transaction().execute(async (trx) => {
    await applyUsageEvents(trx, [usageEvent(9, { estimated_amount: 15 })], deps.rules)
    throw new Error('boom')
  }))
  t.same(await account(), { balance: 79, chat_applied: 19 })
  // Billing prices an event at 0 (its own MODEL_PRICES) while chat priced it: chat_applied still moves, or chat would count it pending forever.
  const free = await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [usageEvent(9, { model: 'free', estimated_amount: 6 })], deps.rules))
  t.same(free.balances.get(9), { balance: 79, chat_applied: 25, version: 5 })
  t.same(await account(), { balance: 79, chat_applied: 25 })
  t.same((await auditLedger(deps.db)).breaks, [])
})

t.test('balances may go below zero through usage only (bounded overdraft)', async (t) => {
  const env = await testEnv(t, { SIGNUP_BONUS: '10' })
  const { deps } = await testDeps(t, env)
  await deps.db.transaction().execute((trx) => applyUsageEvents(trx, [usageEvent(5, { prompt_tokens: 30, completion_tokens: 5 })], deps.rules))
  t.match(await ledgerOf(deps, 5), [{ balance_after: 10 }, { change_amount: -35, balance_after: -25 }])
})

t.test('pricing: exact ceil, per-model ratios with "*" fallback, descriptions', async (t) => {
  t.equal(priceTokens(812, 230, { input: 1, output: 1 }), 1042)
  t.equal(priceTokens(100, 0, { input: 1.1, output: 1 }), 110, 'no float noise (1.1 × 100 is not 110.00000000000001)')
  t.equal(priceTokens(1, 1, { input: 0.1, output: 0.2 }), 1)
  t.equal(priceTokens(3, 0, { input: 0.333333, output: 0 }), 1)
  t.equal(priceTokens(0, 0, { input: 5, output: 5 }), 0)
  const prices = parseModelPrices('{"a":{"input":2,"output":3},"*":{"input":0.5,"output":0.5}}')
  t.same(ratiosFor(prices, 'a'), { input: 2, output: 3 })
  t.same(ratiosFor(prices, 'b'), { input: 0.5, output: 0.5 })
  t.same(ratiosFor({}, 'b'), { input: 1, output: 1 })
  t.throws(() => parseModelPrices('nope'), /JSON/)
  t.throws(() => parseModelPrices('{"a":{"input":-1,"output":1}}'))
  t.throws(() => parseModelPrices('{"a":{"input":1}}'))
  t.throws(() => parseModelPrices('{"a":{"input":0.0000001,"output":1}}'), /decimals/)
  t.throws(() => loadBillingConfig({ MODEL_PRICES: '{"a":1}' }), /MODEL_PRICES/)
  t.equal(usageDescription({ model: 'gpt-4o-mini', prompt_tokens: 812, completion_tokens: 230, usage_source: 'provider' }), '对话消耗 · gpt-4o-mini · 输入 812 + 输出 230')
  t.equal(usageDescription({ model: 'm', prompt_tokens: 1, completion_tokens: 2, usage_source: 'estimated' }), '对话消耗 · m · 输入 1 + 输出 2 · 估算')
  t.equal(usageDescription({ model: 'gpt-4o-mini', prompt_tokens: 812, completion_tokens: 230, usage_source: 'provider', simulated: true }), '对话消耗 · gpt-4o-mini · 输入 812 + 输出 230 · 模拟')
  t.equal(usageDescription({ model: 'm', prompt_tokens: 1, completion_tokens: 0, usage_source: 'estimated', simulated: true }), '对话消耗 · m · 输入 1 + 输出 0 · 估算 · 模拟')
  t.equal(usageDescription({ model: 'gpt-4o-mini', prompt_tokens: 60, completion_tokens: 7, usage_source: 'provider', purpose: 'title' }), '会话标题 · gpt-4o-mini · 输入 60 + 输出 7', 'a title says so')
  t.equal(usageDescription({ model: 'm', prompt_tokens: 60, completion_tokens: 7, usage_source: 'provider', purpose: 'exchange' }), '对话消耗 · m · 输入 60 + 输出 7')
})

t.test('SIGNUP_BONUS_ON=verified_email: an account opened by a read starts at 0; auth.user.registered grants the bonus once', async (t) => {
  const { applyUserRegistered, readBalance } = await import('../src/ledger.ts')
  const { randomUUID } = await import('node:crypto')
  const env = await testEnv(t, { SIGNUP_BONUS_ON: 'verified_email' })
  const { deps } = await testDeps(t, env)
  t.equal(deps.rules.bonusOn, 'verified_email')
  t.equal((await readBalance(deps.db, 77, deps.rules)).balance, 0, 'opened by a read: no bonus')
  const registered = () => ({ event_id: randomUUID(), occurred_at: new Date().toISOString(), user_id: 77, via: 'email' as const })
  await deps.db.transaction().execute((trx) => applyUserRegistered(trx, [registered()], deps.rules))
  t.equal((await readBalance(deps.db, 77, deps.rules)).balance, 1000, 'the event grants it')
  // Another registration event for the same user (an address verified again after a settings change): no second bonus.
  await deps.db.transaction().execute((trx) => applyUserRegistered(trx, [registered(), registered()], deps.rules))
  t.equal((await readBalance(deps.db, 77, deps.rules)).balance, 1000, 'once')
  await deps.db.transaction().execute((trx) => applyUserRegistered(trx, [{ ...registered(), user_id: 78 }], deps.rules))
  t.equal((await readBalance(deps.db, 78, deps.rules)).balance, 1000, 'a user the event opens gets it at once')
  const audit = await auditLedger(deps.db)
  t.same(audit.breaks, [], 'the audit is clean')
})
