// Test helpers for paid top-ups: a billing app whose WeChat Pay is the fake one on loopback (real signatures both ways).
import type { InjectOptions } from 'fastify'
import { generateKeySet, merchantEnv, startFakeWechatPay, type FakeWechatPay, type FakeWechatPayOptions, type TestKeySet } from '@chat-platform/wechatpay/testing'
import type { SignedNotification } from '@chat-platform/wechatpay'
import { auditLedger } from '../src/audit.ts'
import { buildTestApp, bearer, type Teardown } from './helper.ts'

export const NOTIFY = '/api/billing/wechatpay/notify'

export { merchantEnv }

export interface PaymentsAppOptions {
  /** Extra environment (e.g. NODE_ENV, ORDER_POLL_AFTER_MS). */
  env?: Record<string, string>
  /** Start a fake WeChat Pay and configure the merchant (default true); false: unconfigured (simulator or 503). */
  merchant?: boolean
  /** openids auth would answer, by user id. */
  openids?: Record<number, string>
  /** More options of the fake WeChat Pay (e.g. a second platform key). */
  fake?: Omit<FakeWechatPayOptions, 'keys'>
}

/** A billing app (not listening) on a fresh database, with the fake WeChat Pay; the poller is not started (tests run rounds). */
export async function buildPaymentsApp (t: Teardown, opts: PaymentsAppOptions = {}) {
  let keys: TestKeySet | undefined
  let fake: FakeWechatPay | undefined
  if (opts.merchant !== false) {
    keys = await generateKeySet()
    fake = await startFakeWechatPay({ ...opts.fake, keys })
    t.teardown(() => fake!.close())
  }
  const openids = opts.openids ?? {}
  const { app, deps, config, env } = await buildTestApp(t, { ORDER_POLL_MS: '0', ...(keys && fake ? merchantEnv(keys, fake.url) : {}), ...(opts.env ?? {}) }, {
    prepare: (deps) => { deps.payments.openidOf = async (userId) => openids[userId] ?? null }
  })

  const order = async (userId: number, body: Record<string, unknown> = { package_id: 'starter', channel: 'native' }, headers: Record<string, string> = {}) =>
    await app.inject({ method: 'POST', url: '/api/billing/orders', payload: body, headers: { ...bearer(userId), ...headers } })
  /** Posts a built callback the way WeChat Pay does: its exact bytes, its headers. */
  const notify = async (n: SignedNotification) =>
    await app.inject({ method: 'POST', url: NOTIFY, headers: { ...n.headers, 'content-type': 'application/json' }, payload: n.body } as InjectOptions)
  const balance = async (userId: number) => (await app.inject({ method: 'GET', url: '/api/user/balance', headers: bearer(userId) })).json().balance as number
  const payments = async (userId: number) => await deps.db.selectFrom('transactions').selectAll().where('user_id', '=', userId).where('kind', '=', 'payment').execute()
  const orderRow = async (orderNo: string) => await deps.db.selectFrom('orders').selectAll().where('order_no', '=', orderNo).executeTakeFirstOrThrow()
  const audit = async () => {
    const report = await auditLedger(deps.db)
    return report.breaks
  }
  return { app, deps, config, env, keys: keys!, fake: fake!, order, notify, balance, payments, orderRow, audit }
}
