// Development without a WeChat Pay merchant, through the real processes and the gateway: the labelled payment
// simulator places the order, simulate-paid feeds its signed callback through billing's notify route, and the user is
// credited once (what `pnpm start` shows); the notify route refuses what the simulator did not sign.
import t from 'tap'
import { startSystem } from './support/system.ts'
import { assertAuditPasses, assertExactBalance, assertProblem, registerUser } from './support/client.ts'

t.setTimeout(180_000)

const system = await startSystem(t, { procEnv: { billing: { NODE_ENV: 'development' } } })

t.test('order → simulate-paid → credited once, labelled simulated all the way', async (t) => {
  const user = await registerUser(system, 'sim')
  const created = await system.request('POST', '/api/billing/orders', { token: user.token, body: { package_id: 'standard', channel: 'native' } })
  t.equal(created.status, 200, JSON.stringify(created.body))
  t.match(created.body, { status: 'pending', tokens: 6000, pay: { code_url: /simulated/, simulated: true } })
  const orderNo = created.body.order_no

  const other = await registerUser(system, 'sim-other')
  assertProblem(t, await system.request('POST', `/api/billing/orders/${orderNo}/simulate-paid`, { token: other.token }), 404, 'not_found', 'another user\'s order')

  const [a, b] = await Promise.all([
    system.request('POST', `/api/billing/orders/${orderNo}/simulate-paid`, { token: user.token }),
    system.request('POST', `/api/billing/orders/${orderNo}/simulate-paid`, { token: user.token })
  ])
  t.equal(a.status, 200, JSON.stringify(a.body))
  t.equal(b.status, 200, JSON.stringify(b.body))
  t.match(a.body, { order_no: orderNo, status: 'paid' })
  user.recharged += 6000
  await assertExactBalance(t, system, user)

  const forged = await fetch(`${system.gatewayUrl}/api/billing/wechatpay/notify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":"x","resource":{}}' })
  t.equal(forged.status, 400, 'an unsigned callback is refused')
  t.match(await forged.json(), { code: /\S/, message: /\S/ })
  await assertAuditPasses(t, system)
})
