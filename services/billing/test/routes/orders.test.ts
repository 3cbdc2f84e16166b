// Paid top-ups against the fake WeChat Pay: ordering (native, jsapi), the callback, exactly-once credit under races,
// tampered callbacks, another user's orders, Idempotency-Key, and the ledger audit after each.
import t from 'tap'
import { createPublicKey, createVerify } from 'node:crypto'
import { sql } from 'kysely'
import { balanceCacheKey } from '@chat-platform/contracts'
import { createDb } from '@chat-platform/platform'
import { waitFor } from '@chat-platform/platform/testing'
import { bearer } from '../helper.ts'
import type { Database } from '../../src/db/database.ts'
import { buildPaymentsApp } from '../payments-helper.ts'

/** The client config billing built from its WECHATPAY_* variables (to rebuild the client with another timeout). */
function clientConfigOf (deps: Awaited<ReturnType<typeof buildPaymentsApp>>['deps']) {
  const m = deps.payments.config.merchant!
  return { mchid: m.mchid, appid: m.appid, merchantSerial: m.merchantSerial, privateKey: m.privateKey, apiV3Key: m.apiV3Key, publicKeys: new Map(m.publicKeys.map((k) => [k.id, k.pem])), notifyUrl: m.notifyUrl, apiBase: m.apiBase, timeoutMs: 5000 }
}

const CHINA_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$/

t.test('GET /api/billing/packages lists the packages on sale (needs a token)', async (t) => {
  const { app } = await buildPaymentsApp(t, { merchant: false, env: { RECHARGE_PACKAGES: JSON.stringify([{ id: 'p1', name: '一千', price_fen: 990, tokens: 1000 }]) } })
  const res = await app.inject({ method: 'GET', url: '/api/billing/packages', headers: bearer(1) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), [{ id: 'p1', name: '一千', price_fen: 990, tokens: 1000 }])
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/packages' })).statusCode, 401)
})

t.test('native order → callback → paid, credited once with a payment row, balance and transactions', async (t) => {
  const { app, deps, fake, keys, order, notify, balance, payments, orderRow, audit } = await buildPaymentsApp(t)
  const res = await order(1, { package_id: 'starter', channel: 'native', amount_fen: 1 })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.match(body, { order_no: /^[A-Za-z0-9]{6,32}$/, package_id: 'starter', channel: 'native', amount_fen: 990, tokens: 1000, status: 'pending' })
  t.match(body.expires_at, CHINA_TIME)
  t.ok(Math.abs(Date.parse(body.expires_at) - Date.parse(body.created_at) - 30 * 60_000) < 2000, 'expires 30 minutes after creation')
  t.match(body.pay, { code_url: /^weixin:\/\// })
  t.notOk('simulated' in body.pay, 'a real merchant is not labelled simulated')
  t.notOk('paid_at' in body)
  const placed = fake.order(body.order_no)!
  t.equal(placed.amount_total, 990, 'WeChat Pay got the package price')
  t.equal(placed.time_expire, body.expires_at, 'time_expire is the order\'s expires_at')
  t.equal(placed.mchid, keys.mchid)

  fake.markPaid(body.order_no)
  const cb = await notify(fake.notification(body.order_no))
  t.equal(cb.statusCode, 204)
  t.equal(cb.body, '')
  t.equal(await deps.redis.get(balanceCacheKey(1)), '2000:0', 'the Redis copy chat and auth read moved with the credit')
  t.equal(await balance(1), 2000, 'signup bonus + 1000 tokens')
  const rows = await payments(1)
  t.equal(rows.length, 1)
  t.match(rows[0], { change_amount: 1000, source_id: body.order_no, description: '充值 · ¥9.90 · 1000 tokens' })
  const tx = (await app.inject({ method: 'GET', url: '/api/billing/transactions', headers: bearer(1) })).json()
  t.match(tx[0], { change_amount: 1000, balance_after: 2000, description: '充值 · ¥9.90 · 1000 tokens' })
  const got = (await app.inject({ method: 'GET', url: `/api/billing/orders/${body.order_no}`, headers: bearer(1) })).json()
  t.match(got, { order_no: body.order_no, status: 'paid', paid_at: /Z$/ })
  t.equal((await orderRow(body.order_no)).transaction_id, placed.transaction_id, 'WeChat Pay\'s transaction id is kept')
  t.ok((await orderRow(body.order_no)).notified_at, 'the callback is recorded on the order')
  t.same(await audit(), [])
})

t.test('jsapi: pay parameters signed for wx.requestPayment with the payer\'s openid; without an openid 400 naming native', async (t) => {
  const { deps, keys, fake, order, audit } = await buildPaymentsApp(t, { openids: { 1: 'o-payer-1' } })
  const res = await order(1, { package_id: 'standard', channel: 'jsapi' })
  t.equal(res.statusCode, 200, res.body)
  const { pay, order_no: orderNo } = res.json()
  t.match(pay, { appId: keys.appid, signType: 'RSA', package: /^prepay_id=/, timeStamp: /^\d+$/, nonceStr: /\S/ })
  const verifier = createVerify('RSA-SHA256').update(`${pay.appId}\n${pay.timeStamp}\n${pay.nonceStr}\n${pay.package}\n`)
  t.ok(verifier.verify(createPublicKey(keys.merchant.publicKey), pay.paySign, 'base64'), 'paySign verifies with the merchant key')
  t.equal(fake.order(orderNo)!.payer_openid, 'o-payer-1')

  const refused = await order(2, { package_id: 'standard', channel: 'jsapi' })
  t.equal(refused.statusCode, 400)
  t.match(refused.json(), { code: 'validation_failed', detail: /native/ })
  t.equal((await deps.db.selectFrom('orders').select('id').where('user_id', '=', 2).execute()).length, 0, 'no order placed')
  t.equal(fake.requests.filter((r) => r.operation === 'create').length, 1, 'WeChat Pay was not asked for the refused one')
  t.same(await audit(), [])
})

t.test('bad bodies are 400 and place nothing', async (t) => {
  const { deps, order, fake } = await buildPaymentsApp(t)
  for (const body of [{ package_id: 'nope', channel: 'native' }, { package_id: 'starter', channel: 'alipay' }, { channel: 'native' }, { package_id: 'starter' }, {}]) {
    const res = await order(1, body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'validation_failed')
  }
  t.equal((await deps.db.selectFrom('orders').select('id').execute()).length, 0)
  t.equal(fake.requests.length, 0)
})

t.test('duplicate callbacks, the GET query and the poller racing: one credit', async (t) => {
  const { app, deps, fake, order, notify, balance, payments, audit } = await buildPaymentsApp(t)
  for (let round = 0; round < 3; round++) {
    const { order_no: orderNo } = (await order(1)).json()
    // Old enough for the GET check and the poller.
    await sql`update orders set created_at = now() - interval '2 minutes' where order_no = ${orderNo}`.execute(deps.db)
    fake.markPaid(orderNo)
    const n = fake.notification(orderNo)
    const again = fake.notification(orderNo)
    const results = await Promise.all([
      notify(n), notify(n), notify(again), notify(n),
      app.inject({ method: 'GET', url: `/api/billing/orders/${orderNo}`, headers: bearer(1) }),
      deps.orderPoller.runOnce(),
      notify(again)
    ])
    for (const r of results.slice(0, 4)) t.equal((r as { statusCode: number }).statusCode, 204)
    t.equal((results[4] as { statusCode: number }).statusCode, 200)
  }
  t.equal((await payments(1)).length, 3, 'one payment row per order')
  t.equal(await balance(1), 1000 + 3 * 1000)
  t.same(await audit(), [])
  // Late duplicates after everything settled change nothing either.
  const orders = await deps.db.selectFrom('orders').select('order_no').execute()
  for (const o of orders) t.equal((await notify(fake.notification(o.order_no))).statusCode, 204)
  t.equal(await balance(1), 4000)
})

t.test('untrusted callbacks (bad signature, stale timestamp, unknown key, wrong APIv3 key, altered body) are refused with WeChat Pay\'s error format; nothing credited, nothing flagged', async (t) => {
  const { fake, order, notify, balance, orderRow, audit } = await buildPaymentsApp(t)
  const { order_no: orderNo } = (await order(1)).json()
  fake.markPaid(orderNo)
  for (const tamper of ['signature', 'timestamp', 'unknown-key', 'ciphertext', 'body'] as const) {
    const res = await notify(fake.notification(orderNo, { tamper }))
    t.ok(res.statusCode >= 400 && res.statusCode < 600, `${tamper}: ${res.statusCode}`)
    t.match(res.json(), { code: /\S/, message: /\S/ }, `${tamper}: {code, message}`)
  }
  const noHeaders = await notify({ headers: {}, body: Buffer.from('{"resource":{}}') })
  t.equal(noHeaders.statusCode, 400)
  const row = await orderRow(orderNo)
  t.equal(row.status, 'pending')
  t.equal(row.flagged, false)
  t.equal(await balance(1), 1000)
  // The genuine one still works afterwards.
  t.equal((await notify(fake.notification(orderNo))).statusCode, 204)
  t.equal(await balance(1), 2000)
  t.same(await audit(), [])
})

t.test('genuine callbacks that do not match the order (amount, mchid, appid) credit nothing and flag it for an operator', async (t) => {
  const { app, fake, order, notify, balance, orderRow, audit } = await buildPaymentsApp(t)
  const cases = [{ amountFen: 1 }, { mchid: '1234567890' }, { appid: 'wx-someone-else' }]
  const orderNos: string[] = []
  for (const c of cases) {
    const { order_no: orderNo } = (await order(1)).json()
    orderNos.push(orderNo)
    fake.markPaid(orderNo)
    const res = await notify(fake.notification(orderNo, c))
    t.equal(res.statusCode, 204, JSON.stringify(c))
    const row = await orderRow(orderNo)
    t.equal(row.status, 'pending', JSON.stringify(c))
    t.equal(row.flagged, true)
    t.match(row.flag_reason, /mismatch/)
  }
  t.equal(await balance(1), 1000, 'nothing credited')
  const admin = await app.inject({ method: 'GET', url: '/api/admin/orders?status=flagged', headers: bearer(99, { role: 'admin' }) })
  t.equal(admin.statusCode, 200)
  t.same(admin.json().map((o: { order_no: string }) => o.order_no).sort(), [...orderNos].sort())
  t.match(admin.json()[0], { user_id: 1, flagged: true, flag_reason: /mismatch/ })
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /billing_wechatpay_callbacks_total\{outcome="mismatch",service="billing"\} 3/)
  t.match(metrics, /billing_orders_flagged_total\{service="billing"\} 3/)
  t.same(await audit(), [])
})

t.test('another user\'s order is 404; lists hold only the caller\'s orders, newest first', async (t) => {
  const { app, order } = await buildPaymentsApp(t)
  const mine1 = (await order(1)).json().order_no
  const mine2 = (await order(1, { package_id: 'pro', channel: 'native' })).json().order_no
  const theirs = (await order(2)).json().order_no
  const res = await app.inject({ method: 'GET', url: `/api/billing/orders/${theirs}`, headers: bearer(1) })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/orders/ABCDEF123456', headers: bearer(1) })).statusCode, 404, 'a missing one alike')
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/orders/bad..no', headers: bearer(1) })).statusCode, 400)
  const list = (await app.inject({ method: 'GET', url: '/api/billing/orders', headers: bearer(1) })).json()
  t.same(list.map((o: { order_no: string }) => o.order_no), [mine2, mine1])
  const page = (await app.inject({ method: 'GET', url: `/api/billing/orders?limit=1&before_id=${list[0].id}`, headers: bearer(1) })).json()
  t.same(page.map((o: { order_no: string }) => o.order_no), [mine1])
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/orders' })).statusCode, 401)
})

t.test('Idempotency-Key: the same key and body answer the same order; another body is 409; concurrent retries place one order', async (t) => {
  const { deps, fake, order } = await buildPaymentsApp(t)
  const key = { 'idempotency-key': 'order-k1' }
  const first = await order(1, { package_id: 'starter', channel: 'native' }, key)
  const again = await order(1, { package_id: 'starter', channel: 'native', extra: 1 }, key)
  t.equal(first.statusCode, 200)
  t.equal(again.statusCode, 200)
  t.equal(again.json().order_no, first.json().order_no)
  t.same(again.json().pay, first.json().pay)
  const other = await order(1, { package_id: 'pro', channel: 'native' }, key)
  t.equal(other.statusCode, 409)
  t.equal(other.json().code, 'idempotency_conflict')
  t.equal((await order(2, { package_id: 'starter', channel: 'native' }, key)).statusCode, 200, 'keys are per user')

  const concurrent = await Promise.all(Array.from({ length: 8 }, () => order(1, { package_id: 'pro', channel: 'native' }, { 'idempotency-key': 'order-k2' })))
  t.same(concurrent.map((r) => r.statusCode), Array(8).fill(200))
  t.equal(new Set(concurrent.map((r) => r.json().order_no)).size, 1)
  t.equal(new Set(concurrent.map((r) => r.json().pay.code_url)).size, 1, 'placing again is idempotent at WeChat Pay: one code_url')
  t.equal((await deps.db.selectFrom('orders').select('id').where('user_id', '=', 1).execute()).length, 2)
  t.ok(fake.requests.filter((r) => r.operation === 'create').every((r) => r.status === 200))
})

t.test('WeChat Pay refusing the order: 502 with nothing leaked; without a key nothing is kept, with one the retry places the same order', async (t) => {
  const { deps, fake, order } = await buildPaymentsApp(t)
  fake.knobs.create = { status: 500, code: 'SYSTEM_ERROR', message: '系统错误' }
  const res = await order(1)
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'upstream_error')
  t.notMatch(res.body, /SYSTEM_ERROR|127\.0\.0\.1/, 'no upstream detail leaks')
  t.equal((await deps.db.selectFrom('orders').select('id').execute()).length, 0, 'no key: nothing kept')

  t.equal((await order(1, undefined, { 'idempotency-key': 'k' })).statusCode, 502)
  const kept = await deps.db.selectFrom('orders').selectAll().execute()
  t.equal(kept.length, 1, 'with a key the order waits for the retry')
  fake.knobs.create = undefined
  const retry = await order(1, undefined, { 'idempotency-key': 'k' })
  t.equal(retry.statusCode, 200, retry.body)
  t.equal(retry.json().order_no, kept[0].order_no, 'the same order, placed now')
  t.match(retry.json().pay, { code_url: /^weixin:/ })
  t.equal(fake.order(kept[0].order_no)?.amount_total, 990)

  fake.knobs.create = 'hang'
  deps.payments.provider!.client = (await import('@chat-platform/wechatpay')).createWechatPayClient({ ...clientConfigOf(deps), timeoutMs: 300 })
  const hung = await order(1)
  t.equal(hung.statusCode, 503, 'no answer from WeChat Pay: 503')
  t.equal(hung.json().code, 'service_unavailable')
})

t.test('a pending order read with GET is checked with WeChat Pay when older than 10 s, at most every 10 s', async (t) => {
  const { app, deps, fake, order, balance } = await buildPaymentsApp(t)
  const { order_no: orderNo } = (await order(1)).json()
  const get = async () => (await app.inject({ method: 'GET', url: `/api/billing/orders/${orderNo}`, headers: bearer(1) })).json()
  const queries = () => fake.requests.filter((r) => r.operation === 'query').length
  fake.markPaid(orderNo)
  t.equal((await get()).status, 'pending', 'a fresh order is not asked about')
  t.equal(queries(), 0)
  await sql`update orders set created_at = now() - interval '11 seconds' where order_no = ${orderNo}`.execute(deps.db)
  t.equal((await get()).status, 'paid', 'WeChat Pay said SUCCESS: settled on read')
  t.equal(queries(), 1)
  t.equal(await balance(1), 2000)

  const { order_no: other } = (await order(1)).json()
  await sql`update orders set created_at = now() - interval '1 minute' where order_no = ${other}`.execute(deps.db)
  await Promise.all(Array.from({ length: 5 }, () => app.inject({ method: 'GET', url: `/api/billing/orders/${other}`, headers: bearer(1) })))
  t.equal(queries(), 2, 'five reads within 10 s: one query')
  await sql`update orders set checked_at = now() - interval '11 seconds' where order_no = ${other}`.execute(deps.db)
  fake.knobs.query = { status: 500, code: 'SYSTEM_ERROR' }
  const res = await app.inject({ method: 'GET', url: `/api/billing/orders/${other}`, headers: bearer(1) })
  t.equal(res.statusCode, 200, 'a failing query still answers the order')
  t.equal(res.json().status, 'pending')
})

t.test('the poller settles an order whose callback never came', async (t) => {
  const { deps, fake, order, balance, orderRow, audit } = await buildPaymentsApp(t, { env: { ORDER_POLL_AFTER_MS: '60000' } })
  const { order_no: fresh } = (await order(1)).json()
  const { order_no: old } = (await order(1)).json()
  fake.markPaid(fresh)
  fake.markPaid(old)
  await sql`update orders set created_at = now() - interval '2 minutes' where order_no = ${old}`.execute(deps.db)
  const outcomes = await deps.orderPoller.runOnce()
  t.same([...outcomes], [[old, 'paid']], 'only the order older than ORDER_POLL_AFTER_MS')
  t.equal((await orderRow(old)).status, 'paid')
  t.equal((await orderRow(fresh)).status, 'pending')
  t.equal(await balance(1), 2000)
  t.same([...await deps.orderPoller.runOnce()], [], 'asked again only after the period')
  t.same(await audit(), [])
})

t.test('two pollers (replicas) racing over the same orders: each order asked once, credited once', async (t) => {
  const { deps, fake, order, payments, audit } = await buildPaymentsApp(t)
  const nos: string[] = []
  for (let i = 0; i < 6; i++) nos.push((await order(1)).json().order_no)
  for (const no of nos) fake.markPaid(no)
  await sql`update orders set created_at = now() - interval '2 minutes'`.execute(deps.db)
  const { createOrderPoller } = await import('../../src/payments/poller.ts')
  const other = createOrderPoller(deps.payments)
  const [a, b] = await Promise.all([deps.orderPoller.runOnce(), other.runOnce()])
  t.equal(a.size + b.size, 6, 'each order leased by one replica')
  t.equal(fake.requests.filter((r) => r.operation === 'query').length, 6)
  t.equal((await payments(1)).length, 6)
  t.same(await audit(), [])
})

t.test('stopping the poller (SIGTERM) mid-round: no further order is asked about, and a stuck WeChat Pay call does not hold shutdown', async (t) => {
  const { deps, fake, order, orderRow } = await buildPaymentsApp(t)
  const nos: string[] = []
  for (let i = 0; i < 3; i++) nos.push((await order(1)).json().order_no)
  await sql`update orders set created_at = now() - interval '2 minutes'`.execute(deps.db)
  const { createOrderPoller } = await import('../../src/payments/poller.ts')
  const timed = (p: typeof deps.payments) => createOrderPoller({ ...p, config: { ...p.config, pollMs: 20 } }, { stopWaitMs: 1000 })
  const queries = () => fake.requests.filter((r) => r.operation === 'query')

  // A slow answer: stop() waits for the order being checked, then the round ends without asking about the others.
  fake.knobs.answerDelayMs = 400
  const slow = timed(deps.payments)
  slow.start()
  await waitFor(() => queries().length === 1, { what: 'the first query', timeoutMs: 20_000 })
  let started = Date.now()
  await slow.stop()
  t.ok(Date.now() - started < 1000, 'stop() waited for the answer in flight, not for the rest of the round')
  t.equal(queries().length, 1, 'no other order asked about once stopping began')
  t.equal(queries()[0].status, 200, 'the order in flight was answered before stop() returned')

  // WeChat Pay stuck (the client's timeout is 10 s, longer than shutdown can wait): stop() gives up after stopWaitMs.
  fake.knobs.answerDelayMs = undefined
  fake.knobs.query = 'hang'
  await sql`update orders set checked_at = null`.execute(deps.db)
  const stuck = timed(deps.payments)
  stuck.start()
  await waitFor(() => queries().length === 2, { what: 'the stuck query', timeoutMs: 20_000 })
  started = Date.now()
  await stuck.stop()
  const took = Date.now() - started
  t.ok(took >= 900 && took < 5000, `stop() returned after about stopWaitMs (${took} ms), not after the client's 10 s timeout`)
  t.equal(queries().length, 2, 'nothing asked after stop()')
  for (const no of nos) t.equal((await orderRow(no)).status, 'pending', 'the orders stay pending for the next round')
})

t.test('expiry: the poller closes at WeChat Pay, then here; a failing close leaves the order pending', async (t) => {
  const { deps, fake, order, orderRow } = await buildPaymentsApp(t)
  const { order_no: a } = (await order(1)).json()
  const { order_no: b } = (await order(1)).json()
  await sql`update orders set expires_at = now() - interval '1 second' where order_no = ${a}`.execute(deps.db)
  t.same([...await deps.orderPoller.runOnce()], [[a, 'closed']])
  t.equal((await orderRow(a)).status, 'closed')
  t.ok((await orderRow(a)).closed_at)
  t.equal(fake.order(a)!.trade_state, 'CLOSED', 'closed at WeChat Pay')

  fake.knobs.close = { status: 500, code: 'SYSTEM_ERROR' }
  await sql`update orders set expires_at = now() - interval '1 second' where order_no = ${b}`.execute(deps.db)
  t.same([...await deps.orderPoller.runOnce()], [[b, 'close_failed']])
  t.equal((await orderRow(b)).status, 'pending', 'not closed here while WeChat Pay may still take the payment')
  // WeChat Pay closed it on its own meanwhile: the next look (after the period) closes it here.
  fake.knobs.close = undefined
  fake.setState(b, 'CLOSED')
  await sql`update orders set checked_at = now() - interval '2 minutes' where order_no = ${b}`.execute(deps.db)
  t.same([...await deps.orderPoller.runOnce()], [[b, 'closed']])
})

t.test('expired but paid meanwhile (the close fails with ORDERPAID): credited, not closed', async (t) => {
  const { deps, fake, order, orderRow, balance, audit } = await buildPaymentsApp(t)
  const { order_no: orderNo } = (await order(1)).json()
  await sql`update orders set expires_at = now() - interval '1 second' where order_no = ${orderNo}`.execute(deps.db)
  fake.markPaid(orderNo)
  t.same([...await deps.orderPoller.runOnce()], [[orderNo, 'paid']])
  t.equal((await orderRow(orderNo)).status, 'paid')
  t.equal(await balance(1), 2000)
  t.same(await audit(), [])
})

t.test('a payment that succeeds after the order was closed is still credited, and flagged for an operator', async (t) => {
  const { deps, fake, order, notify, orderRow, balance, payments, audit } = await buildPaymentsApp(t)
  const { order_no: orderNo } = (await order(1)).json()
  await sql`update orders set status = 'closed', closed_at = now() where order_no = ${orderNo}`.execute(deps.db)
  fake.markPaid(orderNo)
  t.equal((await notify(fake.notification(orderNo))).statusCode, 204)
  const row = await orderRow(orderNo)
  t.equal(row.status, 'paid')
  t.equal(row.flagged, true)
  t.match(row.flag_reason, /after it was closed/)
  t.equal(await balance(1), 2000)
  t.equal((await notify(fake.notification(orderNo))).statusCode, 204)
  t.equal((await payments(1)).length, 1)
  t.same(await audit(), [])
})

t.test('GET /api/admin/orders: admins only (403 otherwise), filtered by status', async (t) => {
  const { app, fake, order, notify } = await buildPaymentsApp(t)
  const { order_no: paid } = (await order(1)).json()
  const { order_no: pending } = (await order(2)).json()
  fake.markPaid(paid)
  await notify(fake.notification(paid))
  const denied = await app.inject({ method: 'GET', url: '/api/admin/orders', headers: bearer(1) })
  t.equal(denied.statusCode, 403)
  t.equal(denied.json().code, 'forbidden')
  t.equal((await app.inject({ method: 'GET', url: '/api/admin/orders' })).statusCode, 401)
  const admin = bearer(99, { role: 'admin' })
  const all = (await app.inject({ method: 'GET', url: '/api/admin/orders', headers: admin })).json()
  t.same(all.map((o: { order_no: string }) => o.order_no), [pending, paid])
  t.same((await app.inject({ method: 'GET', url: '/api/admin/orders?status=paid', headers: admin })).json().map((o: { order_no: string }) => o.order_no), [paid])
  t.same((await app.inject({ method: 'GET', url: '/api/admin/orders?status=pending', headers: admin })).json().map((o: { user_id: number }) => o.user_id), [2])
  t.equal((await app.inject({ method: 'GET', url: '/api/admin/orders?status=refunded', headers: admin })).statusCode, 400)
})

t.test('the database away when the callback arrives: 500 {code, message} so WeChat Pay retries; the retry credits once', async (t) => {
  const { deps, fake, order, notify, balance, orderRow, audit } = await buildPaymentsApp(t)
  const { order_no: orderNo } = (await order(1)).json()
  fake.markPaid(orderNo)
  const books = deps.payments.books
  const away = createDb<Database>({ url: 'postgres://postgres@127.0.0.1:1/nowhere', schema: 'billing', poolMax: 1 })
  t.teardown(() => away.destroy())
  deps.payments.books = { ...books, db: away }
  const n = fake.notification(orderNo)
  const failed = await notify(n)
  t.equal(failed.statusCode, 500)
  t.match(failed.json(), { code: 'FAIL', message: /\S/ })
  t.notMatch(failed.body, /127\.0\.0\.1|ECONNREFUSED/, 'nothing internal in the answer')
  deps.payments.books = books
  t.equal((await orderRow(orderNo)).status, 'pending')
  t.equal((await notify(n)).statusCode, 204, 'WeChat Pay\'s retry of the same callback')
  t.equal(await balance(1), 2000)
  t.same(await audit(), [])
})
