// `pnpm ops payments:reconcile`: asks WeChat Pay about every order of a window that is not paid here and settles what
// the callback (and the poller) missed, through the same settleOrder as the callback: exactly once, mismatches flagged.
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { selectOrdersCreated } from '../db/repositories/orders.ts'
import { checkOrder, newPaymentStats, type CheckOutcome, type Payments } from '../payments/orders.ts'
import { createPaymentProvider } from '../payments/provider.ts'
import type { BillingOpsContext } from './context.ts'

export interface PaymentsReconcileOptions { since: Date, until?: Date, dryRun?: boolean }
export interface PaymentsReconcileResult {
  since: Date
  until: Date
  checked: number
  /** Per order asked about: what was done (or, in a dry run, what WeChat Pay says). */
  outcomes: { order_no: string, user_id: number, tokens: number, was: string, outcome: CheckOutcome | 'would_settle' | 'would_close' | 'unpaid' }[]
}

/** Orders of `since`–`until` (created) that are pending or closed here are asked about; paid ones are final. */
export async function paymentsReconcile (ctx: BillingOpsContext, opts: PaymentsReconcileOptions): Promise<PaymentsReconcileResult> {
  const config = ctx.config.payments
  if (config.mode !== 'wechatpay') {
    throw new Error(`payments:reconcile needs a WeChat Pay merchant (WECHATPAY_* variables): payments here are ${config.mode === 'simulated' ? 'simulated (the simulator keeps no orders between processes)' : 'not configured'}`)
  }
  const until = opts.until ?? new Date()
  const db = ctx.db() as Kysely<Database>
  const provider = (await createPaymentProvider(config))!
  const log = ctx.log
  const p: Payments = {
    config,
    provider,
    openidOf: async () => null,
    stats: newPaymentStats(),
    books: { db, redis: ctx.redis(), log },
    rules: { signupBonus: ctx.config.SIGNUP_BONUS, prices: ctx.config.MODEL_PRICES, bonusOn: ctx.config.SIGNUP_BONUS_ON }
  }
  const orders = await selectOrdersCreated(db, opts.since, until, ['pending', 'closed'])
  const result: PaymentsReconcileResult = { since: opts.since, until, checked: orders.length, outcomes: [] }
  for (const order of orders) {
    const base = { order_no: order.order_no, user_id: order.user_id, tokens: order.tokens, was: order.status }
    if (opts.dryRun) {
      let outcome: PaymentsReconcileResult['outcomes'][number]['outcome']
      try {
        const tx = await provider.client.queryOrder(order.order_no)
        outcome = tx?.trade_state === 'SUCCESS' ? 'would_settle' : order.status === 'pending' && tx?.trade_state === 'CLOSED' ? 'would_close' : 'unpaid'
      } catch {
        outcome = 'query_failed'
      }
      result.outcomes.push({ ...base, outcome })
      continue
    }
    result.outcomes.push({ ...base, outcome: await checkOrder(p, order, 'reconcile', { closeExpired: false, log }) })
  }
  return result
}

/** The lines `pnpm ops payments:reconcile` prints; exit 1 when an order could not be asked about or was flagged. */
export function reportPaymentsReconcile (ctx: BillingOpsContext, r: PaymentsReconcileResult, dryRun: boolean): number {
  const by = (o: string) => r.outcomes.filter((x) => x.outcome === o)
  const settled = dryRun ? by('would_settle') : by('paid')
  const failed = by('query_failed')
  const flagged = by('mismatch')
  ctx.out(`orders not paid here, created ${r.since.toISOString()} – ${r.until.toISOString()}: ${r.checked} asked about; ` +
    `${dryRun ? 'would settle' : 'settled'} ${settled.length}, ${dryRun ? 'would close' : 'closed'} ${(dryRun ? by('would_close') : by('closed').filter((x) => x.was === 'pending')).length}, ` +
    `already paid ${by('already_paid').length}, mismatched (flagged) ${flagged.length}, query failed ${failed.length}${dryRun ? ' (dry run: nothing written)' : ''}`)
  for (const x of settled) ctx.out(`  ${dryRun ? 'would settle' : 'settled'} ${x.order_no}: user ${x.user_id} +${x.tokens} tokens (was ${x.was})`)
  for (const x of flagged) ctx.out(`  flagged ${x.order_no}: user ${x.user_id}: WeChat Pay's answer does not match the order (GET /api/admin/orders?status=flagged)`)
  for (const x of failed) ctx.out(`  query failed ${x.order_no}: WeChat Pay could not be asked (see the log); run again`)
  return failed.length > 0 || flagged.length > 0 ? 1 : 0
}
