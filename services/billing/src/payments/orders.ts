// Paid top-ups (DESIGN §6.2): placing an order with WeChat Pay, and settling it exactly once from whichever source
// learns first that it was paid (the callback, the query on GET, the poller, payments:reconcile).
import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { SignedNotification, Transaction, WechatPayClient, JsapiPayParams } from '@chat-platform/wechatpay'
import type { Order, OrderChannel } from '../db/database.ts'
import { flagOrder, lockOrder, markOrderClosed, markOrderNotified, markOrderPaid, leaseOrderCheck, selectOrder } from '../db/repositories/orders.ts'
import { postEntries, type Balances, type LedgerRules } from '../ledger.ts'
import { commitAndCache, type Books } from '../post.ts'
import type { PaymentsConfig, RechargePackage } from './config.ts'

/** What the payment code logs with: a request's logger or the process's. */
export type Log = Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>

/** Where the payer's openid comes from (auth, over its internal route): null when the user has none in that app. */
export type OpenidLookup = (userId: number, appid: string, requestId?: string) => Promise<string | null>

/** How billing talks to WeChat Pay: the real merchant, or (unconfigured, outside production) the built-in simulator. */
export interface PaymentProvider {
  client: WechatPayClient
  simulated: boolean
  /** The merchant and app orders are placed under (a callback must name the same). */
  mchid: string
  appid: string
  /** Simulator only: a signed, encrypted TRANSACTION.SUCCESS callback for the order, exactly as WeChat Pay would post it. */
  paidNotification?: (order: Order) => SignedNotification | Promise<SignedNotification>
}

/** Counts since this process started (exposed on /metrics). */
export interface PaymentStats {
  /** Callbacks by outcome: paid, already_paid, mismatch, unknown_order, not_success, rejected, failed. */
  callbacks: Map<string, number>
  /** Settlements by source and outcome (only `paid` credits). */
  settled: Map<string, number>
  /** Orders flagged for an operator. */
  flagged: number
}

export interface Payments {
  config: PaymentsConfig
  /** null in production without a merchant: ordering answers 503. */
  provider: PaymentProvider | null
  openidOf: OpenidLookup
  stats: PaymentStats
  books: Books & { log: Log }
  rules: LedgerRules
}

export const newPaymentStats = (): PaymentStats => ({ callbacks: new Map(), settled: new Map(), flagged: 0 })
const count = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1)

/** A GET re-asks WeChat Pay about a pending order at most this often (DESIGN §6.2). */
export const ORDER_CHECK_MS = 10_000

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/** `yyyyMMddHHmmss` (UTC+8) + 18 random letters and digits (≈107 bits): 32 characters, sortable by time, unguessable. */
export function newOrderNo (now = new Date()): string {
  const stamp = chinaTime(now).replace(/[-T:]/g, '').slice(0, 14)
  const bytes = randomBytes(18)
  let tail = ''
  for (const b of bytes) tail += ALNUM[b % 62] // 256 % 62 leaves a bias of < 2 % per character; 18 characters still carry > 100 bits
  return stamp + tail
}

/** RFC 3339 in China Standard Time, WeChat Pay's `time_expire` format: `2026-12-04T18:30:00+08:00`. */
export function chinaTime (d: Date): string {
  const shifted = new Date(Math.floor(d.getTime() / 1000) * 1000 + 8 * 3600_000)
  return `${shifted.toISOString().slice(0, 19)}+08:00`
}

/** `充值 · ¥9.90 · 1000 tokens` */
export const paymentDescription = (amountFen: number, tokens: number) => `充值 · ¥${(amountFen / 100).toFixed(2)} · ${tokens} tokens`

export type PayParams = (JsapiPayParams | { code_url: string }) & { simulated?: true }

/** What WeChat Pay needs to show the payer: jsapi parameters for wx.requestPayment or the Native QR's code_url. */
export async function placeOrder (p: Payments, order: { order_no: string, channel: OrderChannel, amount_fen: number, expires_at: Date }, pkg: RechargePackage, openid: string | null): Promise<{ prepay_id: string | null, code_url: string | null }> {
  const client = p.provider!.client
  const input = { outTradeNo: order.order_no, description: pkg.name, amountFen: order.amount_fen, timeExpire: chinaTime(order.expires_at) }
  if (order.channel === 'jsapi') return { prepay_id: (await client.createJsapiOrder({ ...input, payerOpenid: openid! })).prepayId, code_url: null }
  return { prepay_id: null, code_url: (await client.createNativeOrder(input)).codeUrl }
}

export function payParams (p: Payments, order: Pick<Order, 'channel' | 'prepay_id' | 'code_url' | 'simulated'>): PayParams {
  const base: PayParams = order.channel === 'jsapi' ? p.provider!.client.jsapiPayParams(order.prepay_id!) : { code_url: order.code_url! }
  return order.simulated ? { ...base, simulated: true } : base
}

export type SettleSource = 'notify' | 'query' | 'poller' | 'reconcile'
export type SettleOutcome = 'paid' | 'already_paid' | 'mismatch' | 'unknown_order'
export interface SettleResult { outcome: SettleOutcome, order?: Order, detail?: string }

/**
 * The one way an order becomes paid, whoever says so: in ONE transaction the order (row-locked) is checked against
 * what WeChat Pay says, moved to `paid` only from another status, and credited with a `payment` ledger row (unique
 * per order_no); then the Redis copy of the balance. A mismatch (mchid, appid, amount) credits nothing and flags the
 * order; a payment that succeeded after the order was closed is still credited, and flagged. `tx` must be SUCCESS.
 */
export async function settleOrder (p: Payments, tx: Transaction, source: SettleSource, log: Log = p.books.log): Promise<SettleResult> {
  if (tx.trade_state !== 'SUCCESS') throw new Error(`settleOrder: trade_state ${tx.trade_state} is not SUCCESS`)
  const result = await commitAndCache(p.books, async (trx): Promise<SettleResult & { balances?: Balances }> => {
    const order = await lockOrder(trx, tx.out_trade_no)
    if (!order) return { outcome: 'unknown_order' }
    if (source === 'notify') await markOrderNotified(trx, order.order_no)
    const mismatches = mismatchesOf(order, tx)
    if (mismatches.length > 0) {
      const detail = `WeChat Pay (${source}) says ${mismatches.join(', ')}`
      await flagOrder(trx, order.order_no, `mismatch: ${detail}`)
      return { outcome: 'mismatch', order, detail }
    }
    if (order.status === 'paid') return { outcome: 'already_paid', order }
    const late = order.status === 'closed' ? `paid after it was closed (${source}, transaction ${tx.transaction_id ?? '?'})` : undefined
    const paidAt = tx.success_time !== undefined && !Number.isNaN(Date.parse(tx.success_time)) ? new Date(tx.success_time) : new Date()
    const paid = await markOrderPaid(trx, order.order_no, { transaction_id: tx.transaction_id ?? null, paid_at: paidAt, flag_reason: late })
    if (!paid) return { outcome: 'already_paid', order }
    const balances = await postEntries(trx, [{
      user_id: order.user_id,
      change_amount: order.tokens,
      kind: 'payment',
      description: paymentDescription(order.amount_fen, order.tokens),
      source_id: order.order_no
    }], p.rules)
    return { outcome: 'paid', order: paid, balances, detail: late }
  }, log)
  count(p.stats.settled, `${source}:${result.outcome}`)
  if (result.outcome === 'mismatch' || (result.outcome === 'paid' && result.detail !== undefined)) {
    p.stats.flagged++
    log.error({ order_no: tx.out_trade_no, source, detail: result.detail, transaction_id: tx.transaction_id }, 'order flagged for an operator')
  } else if (result.outcome === 'paid') {
    log.info({ order_no: tx.out_trade_no, user_id: result.order!.user_id, tokens: result.order!.tokens, source }, 'order paid and credited')
  } else if (result.outcome === 'unknown_order') {
    log.warn({ order_no: tx.out_trade_no, source, transaction_id: tx.transaction_id }, 'WeChat Pay reports a payment for an order billing does not know')
  }
  return { outcome: result.outcome, order: result.order, detail: result.detail }
}

function mismatchesOf (order: Order, tx: Transaction): string[] {
  const out: string[] = []
  if (tx.mchid !== order.mchid) out.push(`mchid ${tx.mchid} (order: ${order.mchid})`)
  if (tx.appid !== order.appid) out.push(`appid ${tx.appid} (order: ${order.appid})`)
  if (tx.amount?.total !== order.amount_fen) out.push(`amount.total ${tx.amount?.total ?? '(none)'} fen (order: ${order.amount_fen})`)
  if (tx.amount?.currency !== undefined && tx.amount.currency !== 'CNY') out.push(`currency ${tx.amount.currency}`)
  return out
}

export type CheckOutcome = SettleOutcome | 'closed' | 'pending' | 'close_failed' | 'query_failed' | 'skipped'

/**
 * Asks WeChat Pay about one order and acts on the answer: SUCCESS settles it; CLOSED (or an order WeChat Pay never
 * heard of, past its expiry) closes it here; still unpaid past `expires_at` (with `closeExpired`) is closed at WeChat
 * Pay and, only once that succeeded, here. Failures leave the order pending for the next look.
 */
export async function checkOrder (p: Payments, order: Order, source: SettleSource, opts: { closeExpired: boolean, log?: Log }): Promise<CheckOutcome> {
  const log = opts.log ?? p.books.log
  const client = p.provider?.client
  if (!client || order.status === 'paid') return 'skipped'
  let tx: Transaction | null
  try {
    tx = await client.queryOrder(order.order_no)
  } catch (err) {
    log.warn({ order_no: order.order_no, source, err: (err as Error).message }, 'WeChat Pay query failed; the order stays as it is')
    return 'query_failed'
  }
  if (tx?.trade_state === 'SUCCESS') return (await settleOrder(p, tx, source, log)).outcome
  if (order.status === 'closed') return 'closed'
  const expired = order.expires_at.getTime() <= Date.now()
  if (tx?.trade_state === 'CLOSED' || tx?.trade_state === 'REVOKED' || (tx === null && expired)) {
    await markOrderClosed(p.books.db, order.order_no)
    log.info({ order_no: order.order_no, source, trade_state: tx?.trade_state ?? 'ORDER_NOT_EXIST' }, 'order closed (WeChat Pay says it is closed)')
    return 'closed'
  }
  if (!expired || !opts.closeExpired) return 'pending'
  try {
    await client.closeOrder(order.order_no)
  } catch (err) {
    log.warn({ order_no: order.order_no, source, err: (err as Error).message }, 'closing the expired order at WeChat Pay failed; it stays pending')
    return 'close_failed'
  }
  await markOrderClosed(p.books.db, order.order_no)
  log.info({ order_no: order.order_no, source }, 'expired order closed at WeChat Pay and here')
  return 'closed'
}

/** GET's check: a pending order older than ORDER_CHECK_MS, asked about at most every ORDER_CHECK_MS (across replicas). */
export async function refreshOrderOnRead (p: Payments, order: Order, log: Log): Promise<Order> {
  if (order.status !== 'pending' || !p.provider || Date.now() - order.created_at.getTime() < ORDER_CHECK_MS) return order
  if (!(await leaseOrderCheck(p.books.db, order.order_no, ORDER_CHECK_MS))) return order
  const outcome = await checkOrder(p, order, 'query', { closeExpired: false, log })
  if (outcome === 'pending' || outcome === 'query_failed' || outcome === 'skipped') return order
  return (await selectOrder(p.books.db, order.order_no)) ?? order
}
