// The development simulator: the real client with real signatures both ways, in process, labelled; its callbacks verify.
import t from 'tap'
import { createPublicKey, createVerify } from 'node:crypto'
import { createSimulatedMerchant, SIMULATED_API_BASE, WechatPayNotificationError } from '../src/index.ts'

const expire = () => new Date(Date.now() + 30 * 60_000 + 8 * 3600_000).toISOString().replace(/\.\d{3}Z$/, '+08:00')

t.test('orders are answered in process, clearly labelled, through the signed protocol', async (t) => {
  const sim = await createSimulatedMerchant({ appid: 'wx1234567890abcdef' })
  t.equal(sim.config.mchid, 'SIMULATED')
  t.equal(sim.config.apiBase, SIMULATED_API_BASE)
  t.match(sim.config.apiBase, /\.invalid$/, 'an address that resolves nowhere')
  const { prepayId } = await sim.client.createJsapiOrder({ outTradeNo: 'SIM000000001', description: '1000 tokens', amountFen: 990, payerOpenid: 'o-dev', timeExpire: expire() })
  t.match(prepayId, /^wx_simulated[0-9a-f]{24}$/)
  const { codeUrl } = await sim.client.createNativeOrder({ outTradeNo: 'SIM000000002', description: '1000 tokens', amountFen: 990, timeExpire: expire() })
  t.match(codeUrl, /^weixin:\/\/wxpay\/bizpayurl\?pr=simulated[0-9a-f]{24}$/)
  t.match(sim.engine.order('SIM000000001'), { appid: 'wx1234567890abcdef', mchid: 'SIMULATED', amount_total: 990, payer_openid: 'o-dev' })
  const pay = sim.client.jsapiPayParams(prepayId)
  const merchantPublic = createPublicKey(sim.config.privateKey)
  t.ok(createVerify('RSA-SHA256').update(`${pay.appId}\n${pay.timeStamp}\n${pay.nonceStr}\n${pay.package}\n`).verify(merchantPublic, pay.paySign, 'base64'))

  t.match(await sim.client.queryOrder('SIM000000001'), { trade_state: 'NOTPAY', out_trade_no: 'SIM000000001' })
  await sim.client.closeOrder('SIM000000002')
  t.match(await sim.client.queryOrder('SIM000000002'), { trade_state: 'CLOSED' })
  t.equal(await sim.client.queryOrder('UNKNOWN00001'), null)
})

t.test('paidNotification: the order is paid and its callback verifies through the real verifyNotification', async (t) => {
  const sim = await createSimulatedMerchant()
  await sim.client.createJsapiOrder({ outTradeNo: 'SIMPAID00001', description: 'x', amountFen: 990, payerOpenid: 'o-dev', timeExpire: expire() })
  // The caller's amount does not override an order this process created (WeChat Pay reports what was ordered).
  const n = sim.paidNotification({ outTradeNo: 'SIMPAID00001', amountFen: 5 })
  const tx = sim.client.verifyNotification(n.headers, n.body)
  t.match(tx, { out_trade_no: 'SIMPAID00001', trade_state: 'SUCCESS', amount: { total: 990 }, mchid: 'SIMULATED', appid: sim.config.appid, payer: { openid: 'o-dev' } })
  t.match(await sim.client.queryOrder('SIMPAID00001'), { trade_state: 'SUCCESS', transaction_id: tx.transaction_id })
  const again = sim.paidNotification({ outTradeNo: 'SIMPAID00001', amountFen: 990 })
  t.equal(sim.client.verifyNotification(again.headers, again.body).transaction_id, tx.transaction_id, 'paying twice is the same payment')

  // An order placed before a restart (unknown here) is described by the caller.
  const lost = sim.paidNotification({ outTradeNo: 'BEFORERESTART', amountFen: 4500, description: 'pkg-5000' })
  t.match(sim.client.verifyNotification(lost.headers, lost.body), { out_trade_no: 'BEFORERESTART', amount: { total: 4500 }, trade_type: 'NATIVE' })

  await sim.client.createNativeOrder({ outTradeNo: 'SIMCLOSED001', description: 'x', amountFen: 1, timeExpire: expire() })
  await sim.client.closeOrder('SIMCLOSED001')
  t.throws(() => sim.paidNotification({ outTradeNo: 'SIMCLOSED001', amountFen: 1 }), /CLOSED/, 'a closed order cannot be paid')

  const tampered = sim.paidNotification({ outTradeNo: 'SIMPAID00001', amountFen: 990 }, { tamper: 'signature' })
  t.throws(() => sim.client.verifyNotification(tampered.headers, tampered.body), WechatPayNotificationError)

  const other = await createSimulatedMerchant()
  const foreign = other.paidNotification({ outTradeNo: 'SIMPAID00001', amountFen: 990 })
  const err = (() => { try { sim.client.verifyNotification(foreign.headers, foreign.body) } catch (e) { return e } })()
  t.match(err, { reason: 'unknown_key' }, 'each simulator has its own keys: another one\'s callback is not trusted')
})
