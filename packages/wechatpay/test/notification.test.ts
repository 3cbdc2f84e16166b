// verifyNotification refuses every callback it cannot trust, saying why; the fake delivers callbacks as WeChat Pay does.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createWechatPayClient, WechatPayNotificationError, type SignedNotification, type WechatPayClient } from '../src/index.ts'
import { clientConfig, decryptResource, encryptResource, generateKeySet, startFakeWechatPay, type FakeWechatPay, type TestKeySet } from '../src/testing/fake-server.ts'

const expire = () => new Date(Date.now() + 30 * 60_000 + 8 * 3600_000).toISOString().replace(/\.\d{3}Z$/, '+08:00')

let keys: TestKeySet
let fake: FakeWechatPay
let client: WechatPayClient
t.before(async () => {
  keys = await generateKeySet()
  fake = await startFakeWechatPay({ keys })
  client = createWechatPayClient(clientConfig(keys, fake.url))
  await client.createJsapiOrder({ outTradeNo: 'NOTIFY000001', description: '1000 tokens', amountFen: 990, payerOpenid: 'o-payer-1', timeExpire: expire() })
  fake.markPaid('NOTIFY000001')
})
t.teardown(() => fake.close())

const refusal = (n: SignedNotification, c = client): WechatPayNotificationError => {
  try {
    c.verifyNotification(n.headers, n.body)
  } catch (err) {
    if (err instanceof WechatPayNotificationError) return err
    throw err
  }
  throw new Error('the notification was accepted')
}

t.test('a genuine callback decrypts to the paid transaction (raw body as Buffer or string, headers in any case)', async (t) => {
  const n = fake.notification('NOTIFY000001')
  const tx = client.verifyNotification(n.headers, n.body)
  t.match(tx, { mchid: keys.mchid, appid: keys.appid, out_trade_no: 'NOTIFY000001', trade_state: 'SUCCESS', trade_type: 'JSAPI', amount: { total: 990, payer_total: 990 }, payer: { openid: 'o-payer-1' }, transaction_id: fake.order('NOTIFY000001')!.transaction_id, success_time: fake.order('NOTIFY000001')!.success_time })
  t.same(client.verifyNotification(n.headers, n.body.toString('utf8')), tx)
  t.same(client.verifyNotification({ ...n.headers, 'wechatpay-serial': [n.headers['wechatpay-serial']] }, n.body), tx, 'array header values (node) are read')
  const capitalised = Object.fromEntries(Object.entries(n.headers).map(([k, v]) => [k.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase()), v]))
  t.ok(capitalised['Wechatpay-Signature'])
  t.same(client.verifyNotification(capitalised, n.body), tx, 'header names in any case')
  const body = JSON.parse(n.body.toString())
  t.match(body, { event_type: 'TRANSACTION.SUCCESS', resource_type: 'encrypt-resource', resource: { algorithm: 'AEAD_AES_256_GCM', original_type: 'transaction', associated_data: 'transaction' } })
  t.notMatch(n.body.toString(), 'NOTIFY000001', 'the order is only inside the ciphertext')
})

t.test('each untrusted callback is refused with its reason', async (t) => {
  const good = fake.notification('NOTIFY000001')
  for (const name of ['wechatpay-signature', 'wechatpay-timestamp', 'wechatpay-nonce', 'wechatpay-serial']) {
    const headers = { ...good.headers }
    delete headers[name]
    t.match(refusal({ headers, body: good.body }), { reason: 'missing_headers' }, `without ${name}`)
  }
  t.match(refusal({ headers: { ...good.headers, 'wechatpay-timestamp': 'yesterday' }, body: good.body }), { reason: 'missing_headers' }, 'a timestamp that is not a number')
  t.match(refusal(fake.notification('NOTIFY000001', { tamper: 'unknown-key' })), { reason: 'unknown_key' })
  t.match(refusal(fake.notification('NOTIFY000001', { tamper: 'timestamp' })), { reason: 'stale_timestamp' })
  const future = Number(good.headers['wechatpay-timestamp']) + 400
  const fromTheFuture = fake.engine.signHeaders(good.body, fake.engine.currentKeyId, future * 1000)
  t.match(refusal({ headers: { ...good.headers, ...fromTheFuture }, body: good.body }), { reason: 'stale_timestamp' }, 'too far ahead too')
  t.match(refusal(fake.notification('NOTIFY000001', { tamper: 'signature' })), { reason: 'bad_signature' })
  t.match(refusal(fake.notification('NOTIFY000001', { tamper: 'body' })), { reason: 'bad_signature' }, 'a body changed after signing')
  t.match(refusal({ headers: { ...good.headers, 'wechatpay-nonce': 'another' }, body: good.body }), { reason: 'bad_signature' }, 'another nonce')
  t.match(refusal({ headers: { ...good.headers, 'wechatpay-signature': 'not base64!' }, body: good.body }), { reason: 'bad_signature' })
  // WeChat Pay probes merchants with deliberately wrong signatures; they must be refused like any other.
  t.match(refusal({ headers: { ...good.headers, 'wechatpay-signature': 'WECHATPAY/SIGNTEST/' + good.headers['wechatpay-signature'].slice(19) }, body: good.body }), { reason: 'bad_signature' }, 'a WECHATPAY/SIGNTEST/ probe')
  t.match(refusal(fake.notification('NOTIFY000001', { tamper: 'ciphertext' })), { reason: 'decrypt_failed' }, 'signed, but encrypted with another APIv3 key')
  const otherMerchant = await generateKeySet({ mchid: keys.mchid })
  const otherClient = createWechatPayClient(clientConfig({ ...keys, apiV3Key: otherMerchant.apiV3Key }, fake.url))
  t.match(refusal(good, otherClient), { reason: 'decrypt_failed' }, 'a merchant with another APIv3 key')

  const signed = (body: string): SignedNotification => ({ headers: fake.engine.signHeaders(body), body: Buffer.from(body) })
  t.match(refusal(signed('not json')), { reason: 'malformed' })
  t.match(refusal(signed('{"event_type":"TRANSACTION.SUCCESS"}')), { reason: 'malformed' }, 'no resource')
  const resource = encryptResource('{"not":"a transaction"}', keys.apiV3Key)
  t.match(refusal(signed(JSON.stringify({ event_type: 'TRANSACTION.SUCCESS', resource: { ...resource, algorithm: 'AEAD_CHACHA20' } }))), { reason: 'malformed' }, 'another algorithm')
  t.match(refusal(signed(JSON.stringify({ event_type: 'TRANSACTION.SUCCESS', resource }))), { reason: 'malformed' }, 'a resource that is no transaction')
  t.match(refusal(signed(JSON.stringify({ event_type: 'TRANSACTION.SUCCESS', resource: encryptResource('garbage', keys.apiV3Key) }))), { reason: 'malformed' })

  const refund = refusal(fake.notification('NOTIFY000001', { eventType: 'REFUND.SUCCESS' }))
  t.match(refund, { reason: 'not_success', eventType: 'REFUND.SUCCESS' })
  // A real refund notification carries a refund resource (original_type refund: no appid, no trade_state), not a
  // transaction: it is genuine and not a payment, so not_success (answered 204), not malformed (refused, redelivered for a day).
  const refundResource = encryptResource(JSON.stringify({ mchid: keys.mchid, out_trade_no: 'NOTIFY000001', transaction_id: '4200000000000000000000000002', out_refund_no: 'R1', refund_id: '50000000000000000000000000001', refund_status: 'SUCCESS', success_time: '2026-12-05T10:00:00+08:00', user_received_account: '支付用户零钱', amount: { total: 990, refund: 990, payer_total: 990, payer_refund: 990 } }), keys.apiV3Key, { associatedData: 'refund', originalType: 'refund' })
  t.match(refusal(signed(JSON.stringify({ event_type: 'REFUND.SUCCESS', resource_type: 'encrypt-resource', resource: refundResource }))), { reason: 'not_success', eventType: 'REFUND.SUCCESS' }, 'a refund resource')
  const unpaid = encryptResource(JSON.stringify({ appid: keys.appid, mchid: keys.mchid, out_trade_no: 'NOTIFY000001', trade_state: 'SUCCESS', transaction_id: '4200000000000000000000000003' }), keys.apiV3Key)
  t.match(refusal(signed(JSON.stringify({ event_type: 'TRANSACTION.SUCCESS', resource: unpaid }))), { reason: 'malformed' }, 'a SUCCESS transaction without amount cannot be matched with the order')
  t.match(refusal(fake.notification('NOTIFY000001', { tradeState: 'PAYERROR' })), { reason: 'not_success', eventType: 'TRANSACTION.SUCCESS' }, 'a SUCCESS event whose transaction did not succeed')
})

t.test('lies inside a genuine callback pass verification unchanged: matching them with the order is the caller\'s job', async (t) => {
  const cheap = fake.notification('NOTIFY000001', { amountFen: 1 })
  t.match(client.verifyNotification(cheap.headers, cheap.body), { amount: { total: 1 } })
  const n = fake.notification('NOTIFY000001', { mchid: '1111111111', appid: 'wxforeign', outTradeNo: 'SOMEONEELSE1' })
  t.match(client.verifyNotification(n.headers, n.body), { mchid: '1111111111', appid: 'wxforeign', out_trade_no: 'SOMEONEELSE1' })
})

t.test('resource encryption round trip; associated data and nonce are bound', async (t) => {
  const r = encryptResource('{"a":1}', keys.apiV3Key, { associatedData: 'transaction', nonce: 'abcdefabcdef' })
  t.equal(decryptResource(r, keys.apiV3Key), '{"a":1}')
  t.throws(() => decryptResource({ ...r, associated_data: 'other' }, keys.apiV3Key))
  t.throws(() => decryptResource({ ...r, nonce: 'abcdefabcdeg' }, keys.apiV3Key))
  t.throws(() => decryptResource({ ...r, ciphertext: 'AAAA' }, keys.apiV3Key))
  t.throws(() => encryptResource('x', 'too short'), /32 bytes/)
})

t.test('the fake delivers callbacks: twice, in parallel, late, out of order, retried until accepted', async (t) => {
  const received: Array<{ outTradeNo: string, id: string, at: number }> = []
  let failNext = 0
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (failNext > 0) {
        failNext--
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"code":"FAIL","message":"try again"}')
        return
      }
      try {
        const body = Buffer.concat(chunks)
        const tx = client.verifyNotification(req.headers, body)
        received.push({ outTradeNo: tx.out_trade_no, id: JSON.parse(body.toString()).id, at: Date.now() })
        res.writeHead(204).end()
      } catch (err) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'SIGN_ERROR', message: (err as Error).message }))
      }
    })
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => receiver.close(() => resolve())))
  const notifyUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/notify`
  const merchant = createWechatPayClient(clientConfig(keys, fake.url, { notifyUrl }))
  for (const no of ['DELIVER00001', 'DELIVER00002', 'DELIVER00003']) {
    await merchant.createNativeOrder({ outTradeNo: no, description: 'x', amountFen: 100, timeExpire: expire() })
  }

  t.same((await fake.pay('DELIVER00001', { times: 2 })).map((d) => d.status), [204, 204], 'to the order\'s notify_url, twice')
  t.equal(received.length, 2)
  t.equal(received[0].id, received[1].id, 'the same notification (same id) twice')
  t.same((await fake.deliver('DELIVER00001', { times: 3, parallel: true })).map((d) => d.status), [204, 204, 204])

  received.length = 0
  fake.markPaid('DELIVER00002')
  fake.markPaid('DELIVER00003')
  const first = fake.notification('DELIVER00002')
  const second = fake.notification('DELIVER00003')
  await fake.post(second, notifyUrl)
  await fake.post(first, notifyUrl)
  t.same(received.map((r) => r.outTradeNo), ['DELIVER00003', 'DELIVER00002'], 'out of order')

  received.length = 0
  const before = Date.now()
  await fake.deliver('DELIVER00002', { delayMs: 300 })
  t.ok(received[0].at - before >= 290, 'late')

  failNext = 2
  const tries = await fake.deliver('DELIVER00003', { retry: { attempts: 5, intervalMs: 10 } })
  t.same(tries.map((d) => d.status), [500, 500, 204], 'posted again until accepted, then no more')
  t.same((await fake.deliver('DELIVER00003', { tamper: 'signature', retry: { attempts: 3, intervalMs: 10 } })).map((d) => d.status), [401, 401, 401])
  t.same((await fake.deliver('DELIVER00003', { url: 'http://127.0.0.1:9/closed' })).map((d) => d.status), [0], 'a refused connection is status 0')
  await t.rejects(fake.deliver('NOSUCHORDER1'), /no order/)
})
