// The 402 check counts what chat charged and billing has not applied: the codec, the arithmetic, and the bound
// with billing stopped (its copy never moves), side by side, with its copy lost, and once billing catches up.
import t from 'tap'
import { balanceCacheKey, decodeBalanceCache, encodeBalanceCache, priceExchange, parseModelPrices } from '@chat-platform/contracts'
import { admissionBalance } from '../src/balance.ts'
import { buildTestApp } from './helper.ts'

t.test('the balance copy codec: one key, two integers, anything else is a miss', async (t) => {
  t.equal(balanceCacheKey(42), 'billing:balance:42')
  t.equal(encodeBalanceCache({ balance: -15, chat_applied: 120 }), '-15:120')
  t.same(decodeBalanceCache('-15:120'), { balance: -15, chat_applied: 120 })
  for (const v of [null, undefined, '', '870', 'garbage', '1:-2', '1.5:2', '1:2:3', '{"balance":1}']) t.equal(decodeBalanceCache(v), undefined, String(v))
})

t.test('admission arithmetic: balance − (recorded − chat_applied) − the prompt of each stale pending exchange', async (t) => {
  const prices = parseModelPrices('{"big":{"input":2,"output":3}}')
  t.equal(admissionBalance({ balance: 100, chat_applied: 40 }, { recorded: 70, stale: [] }, prices, 'm'), 70, '30 recorded, not yet applied')
  t.equal(admissionBalance({ balance: 100, chat_applied: 70 }, { recorded: 70, stale: [] }, prices, 'm'), 100, 'all applied')
  // A copy newer than chat's read (billing applied an event chat's read does not count yet) never adds money.
  t.equal(admissionBalance({ balance: 100, chat_applied: 80 }, { recorded: 70, stale: [] }, prices, 'm'), 100)
  t.equal(admissionBalance({ balance: 100, chat_applied: 70 }, { recorded: 70, stale: [{ model: 'big', prompt_tokens: 10 }, { model: null, prompt_tokens: 5 }] }, prices, 'big'), 100 - 20 - 10)
  t.equal(priceExchange(prices, 'big', 10, 1), 23, 'chat prices with the rule billing charges with')
})

t.test('billing stopped: its copy stays at 30, yet sends one after another stop once chat\'s own charges use it up', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { usage: { prompt_tokens: 12, completion_tokens: 8 } } })
  await s.seedBalance(1, 30)
  const session = await s.createSession(1)
  const codes: number[] = []
  for (let i = 0; i < 6; i++) codes.push((await s.send(1, session.id, `message ${i}`)).statusCode)
  // 30 → 10 → −10: two exchanges, then 402 (the old check answered all six).
  t.same(codes, [200, 200, 402, 402, 402, 402])
  t.equal(s.llm.requests.length, 2)
  const charges = await s.deps.db.selectFrom('user_charges').selectAll().execute()
  t.same(charges.map((c) => [Number(c.user_id), Number(c.recorded)]), [[1, 40]])
  const events = await s.usageEvents()
  t.same(events.map((e) => e.estimated_amount), [20, 20], 'each event carries chat\'s price')
  // Billing applied both and says so in its copy: balance −10 with chat_applied 40 is still ≤ 0.
  await s.seedBalance(1, -10, 40)
  t.equal((await s.send(1, session.id, 'again')).statusCode, 402)
  // A recharge of 100 reaches the copy: 90 left, admitted.
  await s.seedBalance(1, 90, 40)
  t.equal((await s.send(1, session.id, 'recharged')).statusCode, 200)
})

t.test('side by side: at most CHAT_MAX_INFLIGHT exchanges are admitted past zero', async (t) => {
  const s = await buildTestApp(t, { CHAT_MAX_INFLIGHT: '2' }, { knobs: { usage: { prompt_tokens: 20, completion_tokens: 20 }, latencyMs: 50 } })
  await s.seedBalance(1, 30)
  const session = await s.createSession(1)
  let ok = 0
  // Eight waves of eight concurrent sends: once the first two are recorded, every later one is 402.
  for (let wave = 0; wave < 8; wave++) {
    const res = await Promise.all(Array.from({ length: 8 }, (_, i) => s.send(1, session.id, `w${wave} m${i}`)))
    ok += res.filter((r) => r.statusCode === 200).length
    for (const r of res) t.ok([200, 402, 429].includes(r.statusCode), `status ${r.statusCode}`)
  }
  t.ok(ok >= 1 && ok <= 2, `${ok} admitted: one reaches zero (30 − 40), at most one more was in flight beside it`)
  const recorded = Number((await s.deps.db.selectFrom('user_charges').select('recorded').executeTakeFirstOrThrow()).recorded)
  t.equal(recorded, ok * 40)
  t.ok(30 - recorded >= -2 * 40, 'the overdraft is at most CHAT_MAX_INFLIGHT exchanges')
})

t.test('the copy deleted: billing\'s internal answer (balance and chat_applied) decides; with billing down it is 503', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { usage: { prompt_tokens: 10, completion_tokens: 10 } } })
  await s.seedBalance(1, 25)
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'one')).statusCode, 200)
  await s.deps.redis.del(balanceCacheKey(1))
  const res = await s.send(1, session.id, 'two')
  t.equal(res.statusCode, 503, 'billing unreachable and no copy: never admitted blind')
  t.equal(res.json().code, 'service_unavailable')
  t.equal(s.llm.requests.length, 1)
})
