// Payments' three modes — a configured merchant, the labelled simulator (unconfigured, outside production), none
// (unconfigured in production: 503) — and the boot-time checks of RECHARGE_PACKAGES and WECHATPAY_*.
import t from 'tap'
import { generatePlatformKey } from '@chat-platform/wechatpay/testing'
import { bearer, testEnv } from '../helper.ts'
import { buildPaymentsApp, NOTIFY } from '../payments-helper.ts'
import { loadBillingConfig } from '../../src/config.ts'

t.test('simulator (no merchant, outside production): labelled orders, simulate-paid goes through the notify route, credits once', async (t) => {
  const { app, deps, order, balance, payments, audit } = await buildPaymentsApp(t, { merchant: false })
  t.equal(deps.payments.config.mode, 'simulated')
  const res = await order(1)
  t.equal(res.statusCode, 200, res.body)
  const { order_no: orderNo, pay } = res.json()
  t.match(pay, { code_url: /simulated/, simulated: true })
  const paid = async (userId: number) => await app.inject({ method: 'POST', url: `/api/billing/orders/${orderNo}/simulate-paid`, headers: bearer(userId) })
  t.equal((await paid(2)).statusCode, 404, 'another user\'s order')
  const first = await paid(1)
  t.equal(first.statusCode, 200, first.body)
  t.match(first.json(), { order_no: orderNo, status: 'paid', paid_at: /Z$/ })
  t.equal((await paid(1)).statusCode, 200, 'again: still paid')
  const { order_no: closedNo } = (await order(1)).json()
  await deps.db.updateTable('orders').set({ status: 'closed', closed_at: new Date() }).where('order_no', '=', closedNo).execute()
  const closed = await app.inject({ method: 'POST', url: `/api/billing/orders/${closedNo}/simulate-paid`, headers: bearer(1) })
  t.equal(closed.statusCode, 400, 'a closed order cannot be paid')
  t.match(closed.json(), { code: 'validation_failed', detail: /closed/ })
  t.equal(await balance(1), 2000)
  t.equal((await payments(1)).length, 1)
  t.match(deps.payments.stats.callbacks.get('paid'), 1, 'the simulated callback went through the notify route')
  t.same(await audit(), [])
})

t.test('production without a merchant: ordering is 503, simulate-paid does not exist, the callback route says FAIL', async (t) => {
  const { app, deps, order } = await buildPaymentsApp(t, { merchant: false, env: { NODE_ENV: 'production', INTERNAL_TOKEN: 'production-internal-token' } })
  t.equal(deps.payments.config.mode, 'unavailable')
  const res = await order(1)
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'service_unavailable', detail: /not configured/ })
  t.equal((await app.inject({ method: 'POST', url: '/api/billing/orders/20261205ABCDEFGH/simulate-paid', headers: bearer(1) })).statusCode, 404)
  const cb = await app.inject({ method: 'POST', url: NOTIFY, headers: { 'content-type': 'application/json' }, payload: '{}' })
  t.equal(cb.statusCode, 503)
  t.match(cb.json(), { code: 'FAIL' })
  t.equal((await app.inject({ method: 'GET', url: '/api/billing/packages', headers: bearer(1) })).statusCode, 200)
  t.equal((await deps.db.selectFrom('orders').select('id').execute()).length, 0)
})

t.test('a configured merchant has no simulate-paid route', async (t) => {
  const { app, order } = await buildPaymentsApp(t)
  const { order_no: orderNo } = (await order(1)).json()
  t.equal((await app.inject({ method: 'POST', url: `/api/billing/orders/${orderNo}/simulate-paid`, headers: bearer(1) })).statusCode, 404)
})

t.test('WeChat Pay public key rotation: a callback signed with a second configured key (WECHATPAY_PUBLIC_KEYS) is trusted', async (t) => {
  const next = await generatePlatformKey()
  const { fake, order, notify, balance } = await buildPaymentsApp(t, {
    fake: { extraPlatformKeys: [next], currentKeyId: next.keyId },
    env: { WECHATPAY_PUBLIC_KEYS: JSON.stringify([{ id: next.keyId, pem: next.publicKey }]) }
  })
  const { order_no: orderNo } = (await order(1)).json()
  fake.markPaid(orderNo)
  const n = fake.notification(orderNo)
  t.equal(n.headers['Wechatpay-Serial'] ?? n.headers['wechatpay-serial'], next.keyId, 'signed with the new key')
  t.equal((await notify(n)).statusCode, 204)
  t.equal(await balance(1), 2000)
})

t.test('boot-time checks name the variable', async (t) => {
  const env = await testEnv(t)
  const load = (over: Record<string, string>) => () => loadBillingConfig({ ...env, ...over })
  t.throws(load({ RECHARGE_PACKAGES: 'x' }), /RECHARGE_PACKAGES: is not valid JSON/)
  t.throws(load({ RECHARGE_PACKAGES: '[]' }), /RECHARGE_PACKAGES: must be a non-empty JSON array/)
  t.throws(load({ RECHARGE_PACKAGES: '[{"id":"a","name":"A","price_fen":0,"tokens":1}]' }), /RECHARGE_PACKAGES: \[0\]\/price_fen/)
  t.throws(load({ RECHARGE_PACKAGES: '[{"id":"a","name":"A","price_fen":1,"tokens":1},{"id":"a","name":"B","price_fen":2,"tokens":2}]' }), /repeats the id "a"/)
  t.throws(load({ WECHATPAY_MCHID: '1900000109' }), /WECHATPAY_MERCHANT_SERIAL, WECHATPAY_PRIVATE_KEY, WECHATPAY_APIV3_KEY, WECHATPAY_NOTIFY_URL.*required once WeChat Pay is configured/)
  t.throws(load({ WECHATPAY_APIV3_KEY: 'short' }), /WECHATPAY_APIV3_KEY/)
  t.throws(load({ WECHATPAY_PUBLIC_KEY_ID: 'PUB_KEY_ID_1' }), /give both or neither/)
  t.throws(load({ WECHATPAY_PUBLIC_KEYS: '[{"id":"x"}]' }), /WECHATPAY_PUBLIC_KEYS: must be a JSON array/)
  const merchant = {
    WECHATPAY_MCHID: '1900000109',
    WECHATPAY_APPID: 'wx0123456789abcdef',
    WECHATPAY_MERCHANT_SERIAL: 'ABCDEF0123',
    WECHATPAY_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----\\nMII\\n-----END PRIVATE KEY-----',
    WECHATPAY_APIV3_KEY: 'a'.repeat(32),
    WECHATPAY_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\\nMII\\n-----END PUBLIC KEY-----',
    WECHATPAY_PUBLIC_KEY_ID: 'PUB_KEY_ID_0001',
    WECHATPAY_NOTIFY_URL: 'https://pay.example.com/api/billing/wechatpay/notify'
  }
  t.equal(loadBillingConfig({ ...env, ...merchant }).payments.mode, 'wechatpay')
  t.match(loadBillingConfig({ ...env, ...merchant }).payments.merchant, { mchid: '1900000109', privateKey: /\n/ }, '\\n escapes become newlines')
  t.equal(loadBillingConfig({ ...env, ...merchant, WECHATPAY_APPID: '', WECHAT_APPID: 'wxfromlogin' }).payments.appid, 'wxfromlogin', 'WECHATPAY_APPID defaults to WECHAT_APPID')
  t.throws(load({ ...merchant, WECHATPAY_NOTIFY_URL: 'https://pay.example.com/notify?x=1' }), /WECHATPAY_NOTIFY_URL: must carry no query string/)
  const prod = { NODE_ENV: 'production', INTERNAL_TOKEN: 'production-internal-token' }
  t.throws(load({ ...prod, ...merchant, RECHARGE_PACKAGES: '[{"id":"a","name":"A","price_fen":1,"tokens":1}]', WECHATPAY_NOTIFY_URL: 'http://pay.example.com/notify' }), /WECHATPAY_NOTIFY_URL: must be https when NODE_ENV=production/)
  t.throws(load({ ...prod, ...merchant }), /RECHARGE_PACKAGES: required when NODE_ENV=production and WeChat Pay is configured/)
  t.equal(loadBillingConfig({ ...env, ...prod }).payments.mode, 'unavailable')
  t.equal(loadBillingConfig(env).payments.mode, 'simulated')
  t.equal(loadBillingConfig(env).payments.ttlMinutes, 30)
})
