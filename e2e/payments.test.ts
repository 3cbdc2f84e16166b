// Paid top-ups through the real processes and the gateway, against the fake WeChat Pay on loopback: order → callback
// (through the gateway's public route, byte for byte) → balance and transactions; duplicate and racing callbacks credit
// once; tampered callbacks credit nothing; an order never called back is settled by billing's poller; jsapi for a
// WeChat user, 400 for an email-only one; admin reads refused to users; billing:audit clean.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { generateKeySet, merchantEnv, startFakeWechatPay } from '@chat-platform/wechatpay/testing'
import type { SignedNotification } from '@chat-platform/wechatpay'
import { waitFor, withoutCoverage } from '@chat-platform/platform/testing'
import { startSystem } from './support/system.ts'
import { startFakeWechat } from './support/fake-wechat.ts'
import { assertAuditPasses, assertExactBalance, assertProblem, registerUser } from './support/client.ts'

t.setTimeout(240_000)

const wechat = await startFakeWechat(t)
const keys = await generateKeySet({ appid: wechat.appid })
const pay = await startFakeWechatPay({ keys })
t.teardown(() => pay.close())
const system = await startSystem(t, {
  procEnv: {
    auth: { WECHAT_APPID: wechat.appid, WECHAT_SECRET: wechat.secret, WECHAT_API_BASE: wechat.url },
    billing: {
      ...merchantEnv(keys, pay.url),
      ORDER_POLL_MS: '300',
      ORDER_POLL_AFTER_MS: '1500'
    }
  }
})
const STARTED = new Date(Date.now() - 60_000).toISOString()
const NOTIFY = `${system.gatewayUrl}/api/billing/wechatpay/notify`
/** What WeChat Pay does: post the signed callback to the public URL (here the gateway's). */
const callback = async (n: SignedNotification) => await pay.post(n, NOTIFY)

t.test('native order → paid callback through the gateway → credited once, even with duplicates and a query racing', async (t) => {
  const user = await registerUser(system, 'payer')
  const packages = await system.request('GET', '/api/billing/packages', { token: user.token })
  t.equal(packages.status, 200)
  const pkg = packages.body.find((p: { id: string }) => p.id === 'starter')
  const created = await system.request('POST', '/api/billing/orders', { token: user.token, body: { package_id: 'starter', channel: 'native' }, headers: { 'idempotency-key': 'e2e-order-1' } })
  t.equal(created.status, 200, JSON.stringify(created.body))
  t.match(created.body, { status: 'pending', amount_fen: pkg.price_fen, tokens: pkg.tokens, pay: { code_url: /^weixin:/ } })
  const orderNo = created.body.order_no
  const replay = await system.request('POST', '/api/billing/orders', { token: user.token, body: { package_id: 'starter', channel: 'native' }, headers: { 'idempotency-key': 'e2e-order-1' } })
  t.equal(replay.body.order_no, orderNo, 'Idempotency-Key: the same order')

  pay.markPaid(orderNo)
  const n = pay.notification(orderNo)
  const answers = await Promise.all([callback(n), callback(n), callback(pay.notification(orderNo)),
    system.request('GET', `/api/billing/orders/${orderNo}`, { token: user.token })])
  for (const a of answers.slice(0, 3)) t.equal(a.status, 204, 'WeChat Pay gets 204')
  user.recharged += pkg.tokens
  await assertExactBalance(t, system, user)
  const order = await system.request('GET', `/api/billing/orders/${orderNo}`, { token: user.token })
  t.match(order.body, { status: 'paid', paid_at: /Z$/ })
  const txs = await system.request('GET', '/api/billing/transactions', { token: user.token })
  t.equal(txs.body.filter((x: { description: string }) => x.description.startsWith('充值 · ¥')).length, 1, 'one payment row')

  const other = await registerUser(system, 'stranger')
  assertProblem(t, await system.request('GET', `/api/billing/orders/${orderNo}`, { token: other.token }), 404, 'not_found', 'another user\'s order')
  await assertAuditPasses(t, system)
})

t.test('tampered callbacks are refused through the gateway; a wrong amount credits nothing and is listed for admins', async (t) => {
  const user = await registerUser(system, 'tamper')
  const { order_no: orderNo } = (await system.request('POST', '/api/billing/orders', { token: user.token, body: { package_id: 'starter', channel: 'native' } })).body
  pay.markPaid(orderNo)
  for (const tamper of ['signature', 'timestamp', 'body'] as const) {
    const res = await callback(pay.notification(orderNo, { tamper }))
    t.ok(res.status >= 400, `${tamper}: refused with ${res.status} so WeChat Pay retries`)
  }
  t.equal((await callback(pay.notification(orderNo, { amountFen: 1 }))).status, 204)
  await assertExactBalance(t, system, user)
  assertProblem(t, await system.request('GET', '/api/admin/orders?status=flagged', { token: user.token }), 403, 'forbidden', 'admin reads need the role')
  await assertAuditPasses(t, system)
})

t.test('an order whose callback never comes is settled by billing\'s poller', async (t) => {
  const user = await registerUser(system, 'nocallback')
  const { order_no: orderNo, tokens } = (await system.request('POST', '/api/billing/orders', { token: user.token, body: { package_id: 'pro', channel: 'native' } })).body
  pay.markPaid(orderNo)
  await waitFor(async () => (await system.request('GET', `/api/billing/orders/${orderNo}`, { token: user.token })).body.status === 'paid',
    { timeoutMs: 30_000, intervalMs: 300, what: 'the poller settles the order' })
  user.recharged += tokens
  await assertExactBalance(t, system, user)
  await assertAuditPasses(t, system)
})

t.test('jsapi: a WeChat user gets wx.requestPayment parameters; an email-only account is told to use native', async (t) => {
  wechat.codes.set('pay-code-1', { openid: 'o-e2e-payer' })
  const login = await system.request('POST', '/api/auth/wechat-login', { body: { code: 'pay-code-1' } })
  t.equal(login.status, 200)
  const res = await system.request('POST', '/api/billing/orders', { token: login.body.access_token, body: { package_id: 'starter', channel: 'jsapi' } })
  t.equal(res.status, 200, JSON.stringify(res.body))
  t.match(res.body.pay, { appId: keys.appid, signType: 'RSA', package: /^prepay_id=/, paySign: /\S/ })
  t.equal(pay.order(res.body.order_no)?.payer_openid, 'o-e2e-payer', 'WeChat Pay was given the payer\'s openid for this app')

  const emailOnly = await registerUser(system, 'emailonly')
  const refused = await system.request('POST', '/api/billing/orders', { token: emailOnly.token, body: { package_id: 'starter', channel: 'jsapi' } })
  assertProblem(t, refused, 400, 'validation_failed', 'jsapi without an openid')
  t.match(refused.body.detail, /native/)
})

t.test('pnpm ops payments:reconcile (the CLI, billing\'s environment) settles a paid order the callback missed, once', async (t) => {
  const user = await registerUser(system, 'reconcile')
  const { order_no: orderNo, tokens } = (await system.request('POST', '/api/billing/orders', { token: user.token, body: { package_id: 'starter', channel: 'native' } })).body
  pay.markPaid(orderNo)
  const root = fileURLToPath(new URL('..', import.meta.url))
  const env = withoutCoverage({ ...process.env, ...system.env, ...system.opts.procEnv?.billing })
  const child = spawn('pnpm', ['--silent', 'ops', 'payments:reconcile', '--since', STARTED], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (b) => { output += b })
  child.stderr.on('data', (b) => { output += b })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, output)
  // The poller may have got there first: either way the order is paid once.
  t.match(output, /asked about; settled \d+/)
  t.equal((await system.request('GET', `/api/billing/orders/${orderNo}`, { token: user.token })).body.status, 'paid')
  user.recharged += tokens
  await assertExactBalance(t, system, user)
  await assertAuditPasses(t, system)
})
