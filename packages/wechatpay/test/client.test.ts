// The client against the fake WeChat Pay on loopback: signed requests both ways, orders, typed errors, timeouts, key rotation.
import t from 'tap'
import { createPrivateKey, createPublicKey, createVerify } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createWechatPayClient, WechatPayError, type WechatPayConfig } from '../src/index.ts'
import { clientConfig, FOREIGN_KEY_ID, generateKeySet, generatePlatformKey, startFakeWechatPay, parseAuthorization, buildAuthorization, type FakeWechatPay, type TestKeySet } from '../src/testing/fake-server.ts'

const expire = () => new Date(Date.now() + 30 * 60_000 + 8 * 3600_000).toISOString().replace(/\.\d{3}Z$/, '+08:00')
const rejects = async (p: Promise<unknown>): Promise<WechatPayError> => {
  const err = await p.then(() => null, (e: unknown) => e)
  if (!(err instanceof WechatPayError)) throw new Error(`expected a WechatPayError, got ${String(err)}`)
  return err
}

let keys: TestKeySet
let fake: FakeWechatPay
let cfg: WechatPayConfig
t.before(async () => {
  keys = await generateKeySet()
  fake = await startFakeWechatPay({ keys })
  cfg = clientConfig(keys, fake.url, { notifyUrl: 'https://pay.example.com/api/billing/wechatpay/notify' })
})
t.teardown(() => fake.close())
t.beforeEach(() => { for (const k of Object.keys(fake.knobs)) delete fake.knobs[k as keyof typeof fake.knobs] })

t.test('JSAPI order: created with a signed request, answered with a verified prepay_id, paySign checks with the merchant public key', async (t) => {
  const client = createWechatPayClient(cfg)
  const { prepayId } = await client.createJsapiOrder({ outTradeNo: 'JSAPI0000001', description: '1000 tokens', amountFen: 990, payerOpenid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', timeExpire: expire() })
  t.match(prepayId, /^wx_fake[0-9a-f]{24}$/)
  const req = fake.requests.at(-1)!
  t.equal(req.status, 200)
  const auth = parseAuthorization(req.authorization)
  t.equal(auth?.mchid, keys.mchid)
  t.equal(auth?.serial_no, keys.merchant.serial)
  t.match(JSON.parse(req.body), { appid: keys.appid, mchid: keys.mchid, out_trade_no: 'JSAPI0000001', amount: { total: 990, currency: 'CNY' }, payer: { openid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o' }, notify_url: cfg.notifyUrl })
  const order = fake.order('JSAPI0000001')!
  t.equal(order.trade_type, 'JSAPI')
  t.equal(order.amount_total, 990)

  const again = await client.createJsapiOrder({ outTradeNo: 'JSAPI0000001', description: '1000 tokens', amountFen: 990, payerOpenid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', timeExpire: expire() })
  t.equal(again.prepayId, prepayId, 'the same order placed again gets the same prepay_id')
  const clash = await rejects(client.createJsapiOrder({ outTradeNo: 'JSAPI0000001', description: '1000 tokens', amountFen: 1, payerOpenid: 'x', timeExpire: expire() }))
  t.match(clash, { kind: 'api', status: 400, code: 'INVALID_REQUEST', retryable: false }, 'another order under the same out_trade_no is refused')

  const pay = client.jsapiPayParams(prepayId)
  t.match(pay, { appId: keys.appid, package: `prepay_id=${prepayId}`, signType: 'RSA', nonceStr: /^[0-9A-F]{32}$/, timeStamp: /^\d{10}$/ })
  t.ok(Math.abs(Number(pay.timeStamp) - Date.now() / 1000) < 5)
  const message = `${pay.appId}\n${pay.timeStamp}\n${pay.nonceStr}\n${pay.package}\n`
  t.ok(createVerify('RSA-SHA256').update(message).verify(createPublicKey(keys.merchant.publicKey), pay.paySign, 'base64'), 'paySign verifies with the merchant public key')
  t.notOk(createVerify('RSA-SHA256').update(message.replace('prepay_id=', 'prepay_id=x')).verify(createPublicKey(keys.merchant.publicKey), pay.paySign, 'base64'))
})

t.test('Native order, query through its states, close', async (t) => {
  const client = createWechatPayClient(cfg)
  const { codeUrl } = await client.createNativeOrder({ outTradeNo: 'NATIVE000001', description: '5000 tokens', amountFen: 4500, timeExpire: expire() })
  t.match(codeUrl, /^weixin:\/\/wxpay\/bizpayurl\?pr=fake/)
  t.equal(fake.order('NATIVE000001')?.trade_type, 'NATIVE')

  const pending = await client.queryOrder('NATIVE000001')
  t.match(pending, { trade_state: 'NOTPAY', out_trade_no: 'NATIVE000001', mchid: keys.mchid, appid: keys.appid })
  t.notOk(pending?.transaction_id)
  t.notOk(pending?.amount, 'like WeChat Pay, the query answers amount only once the order is paid')
  t.equal(fake.requests.at(-1)!.url, `/v3/pay/transactions/out-trade-no/NATIVE000001?mchid=${keys.mchid}`)

  fake.markPaid('NATIVE000001')
  const paid = await client.queryOrder('NATIVE000001')
  t.match(paid, { trade_state: 'SUCCESS', amount: { total: 4500, payer_total: 4500 }, transaction_id: /^\d{28}$/, success_time: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$/ })
  const refused = await rejects(client.closeOrder('NATIVE000001'))
  t.match(refused, { kind: 'api', status: 400, code: 'ORDERPAID' }, 'a paid order cannot be closed')

  await client.createNativeOrder({ outTradeNo: 'NATIVE000002', description: 'x', amountFen: 1, timeExpire: expire() })
  await client.closeOrder('NATIVE000002')
  t.equal(fake.order('NATIVE000002')?.trade_state, 'CLOSED')
  t.equal(fake.requests.at(-1)!.status, 204)
  t.match(await client.queryOrder('NATIVE000002'), { trade_state: 'CLOSED' })
  t.match(await rejects(client.createNativeOrder({ outTradeNo: 'NATIVE000002', description: 'x', amountFen: 1, timeExpire: expire() })), { code: 'ORDER_CLOSED' })
  t.throws(() => fake.markPaid('NATIVE000002'), /CLOSED/, 'a closed order cannot be paid')

  t.equal(await client.queryOrder('NEVERCREATED1'), null, 'ORDER_NOT_EXIST is null')
  t.match(await rejects(client.closeOrder('NEVERCREATED1')), { kind: 'api', status: 404, code: 'ORDER_NOT_EXIST' })
})

t.test('amount is documented as returned only once paid: an unpaid answer without it is a transaction, a SUCCESS without it is not trusted', async (t) => {
  // WeChat Pay's query answer: "amount 选填 … 订单金额信息，当支付成功时返回该字段". A NOTPAY or CLOSED answer without it must
  // not fail the query (the poller could then never close an expired order); a SUCCESS without it cannot be matched.
  const server = createServer((req, res) => {
    const id = /out-trade-no\/([^/?]+)/.exec(req.url ?? '')?.[1] ?? ''
    const state = id.startsWith('UNPAID') ? 'NOTPAY' : id.startsWith('SHUT') ? 'CLOSED' : 'SUCCESS'
    const body = JSON.stringify({ appid: keys.appid, mchid: keys.mchid, out_trade_no: id, trade_state: state, trade_state_desc: state, ...(state === 'SUCCESS' ? { transaction_id: '4200000000000000000000000001', success_time: '2026-12-05T10:00:00+08:00' } : {}) })
    res.writeHead(200, { 'content-type': 'application/json', ...fake.engine.signHeaders(Buffer.from(body)) })
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const client = createWechatPayClient(clientConfig(keys, `http://127.0.0.1:${(server.address() as AddressInfo).port}`))
  t.match(await client.queryOrder('UNPAID000001'), { trade_state: 'NOTPAY', out_trade_no: 'UNPAID000001' })
  t.match(await client.queryOrder('SHUT00000001'), { trade_state: 'CLOSED' })
  t.match(await rejects(client.queryOrder('PAIDNOAMOUNT')), { kind: 'answer_malformed' })
})

t.test('the fake refuses requests the merchant key did not sign (401 SIGN_ERROR)', async (t) => {
  const other = await generateKeySet()
  const cases: Array<[string, Partial<WechatPayConfig>]> = [
    ['another private key', { privateKey: other.merchant.privateKey }],
    ['another certificate serial', { merchantSerial: other.merchant.serial }],
    ['an unknown mchid', { mchid: '1234567890' }]
  ]
  for (const [name, override] of cases) {
    const err = await rejects(createWechatPayClient({ ...cfg, ...override }).queryOrder('NATIVE000001'))
    t.match(err, { kind: 'api', status: 401, code: 'SIGN_ERROR' }, name)
  }
  const url = `/v3/pay/transactions/out-trade-no/NATIVE000001?mchid=${keys.mchid}`
  const old = buildAuthorization({ mchid: keys.mchid, serial: keys.merchant.serial, privateKey: createPrivateKey(keys.merchant.privateKey), method: 'GET', url, body: '', timestamp: String(Math.floor(Date.now() / 1000) - 600), nonce: 'N0NCE' })
  const stale = await fetch(fake.url + url, { headers: { authorization: old } })
  t.equal(stale.status, 401, 'a signature 10 minutes old')
  t.match(await stale.json(), { code: 'SIGN_ERROR', message: /时间戳/ })
  const bare = await fetch(`${fake.url}/v3/pay/transactions/out-trade-no/NATIVE000001?mchid=${keys.mchid}`)
  t.equal(bare.status, 401, 'no Authorization at all')
  t.match(await bare.json(), { code: 'SIGN_ERROR' })

  // A valid signature of one body does not carry another: replay the recorded Authorization with a changed amount.
  const client = createWechatPayClient(cfg)
  await client.createNativeOrder({ outTradeNo: 'TAMPER000001', description: 'x', amountFen: 100, timeExpire: expire() })
  const signed = fake.requests.at(-1)!
  const res = await fetch(`${fake.url}${signed.url}`, { method: 'POST', headers: { authorization: signed.authorization!, 'content-type': 'application/json' }, body: signed.body.replace('"total":100', '"total":1') })
  t.equal(res.status, 401)
  const viaGet = await fetch(`${fake.url}/v3/pay/transactions/out-trade-no/TAMPER000001?mchid=${keys.mchid}`, { headers: { authorization: signed.authorization! } })
  t.equal(viaGet.status, 401, 'nor another method and URL')
})

t.test('answers are trusted only with a valid signature by a configured key', async (t) => {
  const client = createWechatPayClient(cfg)
  await client.createNativeOrder({ outTradeNo: 'ANSWERS00001', description: 'x', amountFen: 100, timeExpire: expire() })
  for (const mode of ['bad', 'none', 'foreign-key', 'stale'] as const) {
    fake.knobs.answerSignature = mode
    const err = await rejects(client.queryOrder('ANSWERS00001'))
    t.match(err, { kind: 'answer_signature', status: 200 }, `query answer signed ${mode}`)
    if (mode === 'foreign-key') t.match(err.message, FOREIGN_KEY_ID)
    t.match(await rejects(client.createNativeOrder({ outTradeNo: 'ANSWERS00002', description: 'x', amountFen: 1, timeExpire: expire() })), { kind: 'answer_signature' }, `create answer signed ${mode}`)
    t.match(await rejects(client.closeOrder('NOSUCHORDER9')), { kind: mode === 'none' ? 'api' : 'answer_signature' }, `error answer signed ${mode}`)
    t.match(await rejects(client.queryOrder('NOSUCHORDER9')), { kind: 'answer_signature' }, `an ORDER_NOT_EXIST signed ${mode} is not taken for null`)
  }
  fake.knobs.answerSignature = 'valid'
  t.match(await client.queryOrder('ANSWERS00001'), { trade_state: 'NOTPAY' })
})

t.test('WeChat Pay errors, timeouts and an unreachable server are typed', async (t) => {
  const client = createWechatPayClient({ ...cfg, timeoutMs: 500 })
  await client.createNativeOrder({ outTradeNo: 'FAILURES0001', description: 'x', amountFen: 100, timeExpire: expire() })
  fake.knobs.query = { status: 500, code: 'SYSTEM_ERROR', message: '系统繁忙' }
  const err = await rejects(client.queryOrder('FAILURES0001'))
  t.match(err, { kind: 'api', status: 500, code: 'SYSTEM_ERROR', retryable: true })
  t.match(err.message, '系统繁忙')
  fake.knobs.close = { status: 503 }
  t.match(await rejects(client.closeOrder('FAILURES0001')), { kind: 'api', status: 503, retryable: true })
  t.equal(fake.order('FAILURES0001')?.trade_state, 'NOTPAY', 'a failed close closes nothing')

  fake.knobs.query = 'hang'
  const started = Date.now()
  t.match(await rejects(client.queryOrder('FAILURES0001')), { kind: 'timeout', retryable: true })
  t.ok(Date.now() - started < 5000, 'gives up after timeoutMs')
  t.equal(fake.requests.at(-1)!.status, 'hung')
  fake.knobs.create = 'hang'
  t.match(await rejects(client.createJsapiOrder({ outTradeNo: 'FAILURES0002', description: 'x', amountFen: 1, payerOpenid: 'o', timeExpire: expire() })), { kind: 'timeout' })

  const gone = await startFakeWechatPay({ keys })
  await gone.close()
  t.match(await rejects(createWechatPayClient(clientConfig(keys, gone.url)).queryOrder('FAILURES0001')), { kind: 'network', retryable: true })

  const fakeSlow = createWechatPayClient({ ...cfg, timeoutMs: 300 })
  fake.knobs.query = undefined
  fake.knobs.answerDelayMs = 1000
  t.match(await rejects(fakeSlow.queryOrder('FAILURES0001')), { kind: 'timeout' }, 'a slow answer is a timeout too')
})

t.test('rotation: several WeChat Pay public keys at once, chosen by Wechatpay-Serial', async (t) => {
  const next = await generatePlatformKey()
  const rotating = await startFakeWechatPay({ keys, extraPlatformKeys: [next], currentKeyId: next.keyId })
  t.teardown(() => rotating.close())
  const both = createWechatPayClient(clientConfig(keys, rotating.url, { publicKeys: new Map([[next.keyId, next.publicKey], [keys.platform.keyId, keys.platform.publicKey]]) }))
  await both.createNativeOrder({ outTradeNo: 'ROTATION0001', description: 'x', amountFen: 100, timeExpire: expire() })
  t.match(await both.queryOrder('ROTATION0001'), { trade_state: 'NOTPAY' })
  rotating.markPaid('ROTATION0001')
  // Callbacks come signed with either key during a rotation.
  const fresh = rotating.notification('ROTATION0001')
  t.equal(fresh.headers['wechatpay-serial'], next.keyId)
  t.match(both.verifyNotification(fresh.headers, fresh.body), { trade_state: 'SUCCESS' }, 'the new key')
  const old = rotating.notification('ROTATION0001', { keyId: keys.platform.keyId })
  t.equal(old.headers['wechatpay-serial'], keys.platform.keyId)
  t.match(both.verifyNotification(old.headers, old.body), { trade_state: 'SUCCESS' }, 'the old key')

  // A merchant that knows only the old key asks for answers under it, but a callback under the new one is refused.
  const oldOnly = createWechatPayClient(clientConfig(keys, rotating.url))
  t.match(await oldOnly.queryOrder('ROTATION0001'), { trade_state: 'SUCCESS' })
  t.equal(rotating.requests.at(-1)!.status, 200)
  const n = rotating.notification('ROTATION0001')
  t.match(t.throws(() => oldOnly.verifyNotification(n.headers, n.body)), { reason: 'unknown_key' })

  // A key id the server no longer holds: WeChat Pay refuses the request.
  const retired = await generatePlatformKey()
  const stale = createWechatPayClient(clientConfig(keys, rotating.url, { publicKeys: new Map([[retired.keyId, retired.publicKey]]) }))
  t.match(await rejects(stale.queryOrder('ROTATION0001')), { kind: 'answer_signature' }, 'its 400 is signed by a key it does not know')
})

t.test('a bad configuration fails at creation', async (t) => {
  t.throws(() => createWechatPayClient({ ...cfg, apiV3Key: 'short' }), /apiV3Key must be 32 bytes/)
  t.throws(() => createWechatPayClient({ ...cfg, publicKeys: new Map() }), /public key/)
  t.throws(() => createWechatPayClient({ ...cfg, mchid: '' }), /mchid is required/)
  t.throws(() => createWechatPayClient({ ...cfg, timeoutMs: 0 }), /timeoutMs/)
  t.throws(() => createWechatPayClient({ ...cfg, privateKey: 'not a pem' }))
  t.throws(() => createWechatPayClient({ ...cfg, publicKeys: new Map([['PUB_KEY_ID_1', 'not a pem']]) }))
})

t.test('the fake checks orders like WeChat Pay: merchants apart, appid bound to mchid, parameters validated', async (t) => {
  const second = await generateKeySet({ mchid: '1900000200', appid: 'wx2222222222222222' })
  const shared = await startFakeWechatPay({ keys: [keys, second] })
  t.teardown(() => shared.close())
  const a = createWechatPayClient(clientConfig(keys, shared.url))
  const b = createWechatPayClient(clientConfig(second, shared.url, { publicKeys: new Map([[keys.platform.keyId, keys.platform.publicKey]]) }))
  await a.createNativeOrder({ outTradeNo: 'MERCHANTA001', description: 'x', amountFen: 100, timeExpire: expire() })
  t.equal(await b.queryOrder('MERCHANTA001'), null, 'another merchant does not see the order')
  await b.createNativeOrder({ outTradeNo: 'MERCHANTA001', description: 'y', amountFen: 5, timeExpire: expire() })
  t.equal(shared.engine.order('MERCHANTA001', second.mchid)?.amount_total, 5, 'the same number is another order under another merchant')
  t.equal(shared.engine.order('MERCHANTA001', keys.mchid)?.amount_total, 100)

  const wrongApp = createWechatPayClient(clientConfig(keys, shared.url, { appid: second.appid }))
  t.match(await rejects(wrongApp.createNativeOrder({ outTradeNo: 'WRONGAPP0001', description: 'x', amountFen: 1, timeExpire: expire() })), { status: 400, code: 'APPID_MCHID_NOT_MATCH' })
  const bad: Array<[string, Parameters<typeof a.createJsapiOrder>[0]]> = [
    ['out_trade_no', { outTradeNo: 'bad no!', description: 'x', amountFen: 1, payerOpenid: 'o', timeExpire: expire() }],
    ['description', { outTradeNo: 'PARAMS000001', description: '', amountFen: 1, payerOpenid: 'o', timeExpire: expire() }],
    ['amount', { outTradeNo: 'PARAMS000001', description: 'x', amountFen: 0, payerOpenid: 'o', timeExpire: expire() }],
    ['time_expire', { outTradeNo: 'PARAMS000001', description: 'x', amountFen: 1, payerOpenid: 'o', timeExpire: '2026-12-04 18:30:00' }],
    ['openid', { outTradeNo: 'PARAMS000001', description: 'x', amountFen: 1, payerOpenid: '', timeExpire: expire() }]
  ]
  for (const [name, input] of bad) t.match(await rejects(a.createJsapiOrder(input)), { kind: 'api', status: 400, code: 'PARAM_ERROR' }, name)
  t.notOk(shared.order('PARAMS000001'), 'nothing was created')
})
