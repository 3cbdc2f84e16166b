// Paid top-ups for users: GET /api/billing/packages, POST/GET /api/billing/orders, GET /api/billing/orders/{order_no},
// and (simulator only) POST /api/billing/orders/{order_no}/simulate-paid.
import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import {
  CreateOrderBodySchema, CreatedOrderSchema, OrderParamsSchema, OrderSchema, PaginationQuerySchema, RechargePackageViewSchema,
  type CreatedOrder, type OrderView
} from '@chat-platform/contracts'
import { ProblemError, notFound, unauthorized, validationFailed } from '@chat-platform/platform'
import type { BillingDeps } from '../deps.ts'
import type { Order } from '../db/database.ts'
import { deleteUnplacedOrder, insertOrder, listOrders, selectOrder } from '../db/repositories/orders.ts'
import { claimIdempotencyKey, saveIdempotentResponse, selectIdempotencyKey } from '../db/repositories/idempotency-keys.ts'
import { newOrderNo, payParams, placeOrder, refreshOrderOnRead, chinaTime, type Payments } from '../payments/orders.ts'
import { problems, RechargeHeadersSchema } from './schemas.ts'

/** An order as its user sees it. */
export function orderView (o: Order): OrderView {
  const view: OrderView = {
    id: o.id,
    order_no: o.order_no,
    package_id: o.package_id,
    channel: o.channel,
    amount_fen: o.amount_fen,
    tokens: o.tokens,
    status: o.status,
    created_at: o.created_at.toISOString(),
    expires_at: chinaTime(o.expires_at)
  }
  if (o.paid_at) view.paid_at = o.paid_at.toISOString()
  return view
}

const unavailable = () => new ProblemError('service_unavailable', 'Payments are not available: WeChat Pay is not configured on this server.')

export async function orderRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const p: Payments = opts.deps.payments
  const { db } = opts.deps

  app.get('/api/billing/packages', {
    schema: {
      tags: ['billing'],
      summary: 'The top-up packages on sale (RECHARGE_PACKAGES)',
      security: [{ bearer: [] }],
      response: { 200: Type.Array(RechargePackageViewSchema), ...problems(401) }
    },
    onRequest: app.authenticate
  }, async () => p.config.packages)

  app.post('/api/billing/orders', {
    schema: {
      tags: ['billing'],
      summary: 'Order a package: a pending order and what WeChat Pay needs to pay it (jsapi parameters or a Native code_url)',
      security: [{ bearer: [] }],
      headers: RechargeHeadersSchema,
      body: CreateOrderBodySchema,
      response: { 200: CreatedOrderSchema, ...problems(400, 401, 409, 502, 503) }
    },
    onRequest: app.authenticate
  }, async (request): Promise<CreatedOrder> => {
    const provider = p.provider
    if (!provider) throw unavailable()
    const userId = request.user.id
    const { package_id: packageId, channel } = request.body
    const pkg = p.config.packages.find((k) => k.id === packageId)
    if (!pkg) throw validationFailed('/body/package_id', `is not a package on sale (${p.config.packages.map((k) => k.id).join(', ')})`)
    if (!(await opts.deps.knownUser(userId, String(request.id)))) throw unauthorized('The bearer token is invalid or expired.')
    const key = request.headers['idempotency-key']
    const hash = createHash('sha256').update(JSON.stringify({ op: 'order', package_id: packageId, channel })).digest('hex')

    let openid: string | null = null
    if (channel === 'jsapi') {
      openid = await p.openidOf(userId, provider.appid, String(request.id))
      if (openid === null) {
        throw validationFailed('/body/channel', 'is "jsapi", which needs a WeChat login in this app (the payer has no openid here); use "native" to pay by scanning a QR code')
      }
    }

    // The order (and the key, if any) is committed before WeChat Pay is asked, so no pool connection waits on WeChat
    // Pay. A concurrent retry with the same key waits on the key's unique index until that commit, then finds the
    // order. Placing it is idempotent at WeChat Pay (the same out_trade_no with the same parameters answers the same
    // prepay_id or code_url), so a retry of an order whose placing failed or is still in flight places it again.
    const { order, replayed } = await db.transaction().execute(async (trx): Promise<{ order: Order, replayed: boolean }> => {
      if (key !== undefined && !(await claimIdempotencyKey(trx, userId, key, hash))) {
        const first = await selectIdempotencyKey(trx, userId, key)
        const orderNo = (first?.response_body as { order_no?: unknown } | null)?.order_no
        const found = first?.request_hash === hash && typeof orderNo === 'string' ? await selectOrder(trx, orderNo) : undefined
        if (!found) throw new ProblemError('idempotency_conflict', 'This Idempotency-Key was already used with a different request body.')
        return { order: found, replayed: true }
      }
      const now = new Date()
      const inserted = await insertOrder(trx, {
        order_no: newOrderNo(now),
        user_id: userId,
        package_id: pkg.id,
        channel,
        amount_fen: pkg.price_fen,
        tokens: pkg.tokens,
        mchid: provider.mchid,
        appid: provider.appid,
        simulated: provider.simulated,
        created_at: now,
        expires_at: new Date(now.getTime() + p.config.ttlMinutes * 60_000)
      })
      if (key !== undefined) await saveIdempotentResponse(trx, userId, key, 200, { order_no: inserted.order_no })
      return { order: inserted, replayed: false }
    })
    let placed = order
    if (order.prepay_id === null && order.code_url === null) {
      if (order.status !== 'pending') {
        throw new ProblemError('idempotency_conflict', `The order of this Idempotency-Key is ${order.status} and was never placed with WeChat Pay; order again with a new key.`)
      }
      try {
        const answer = await placeWithWechatPay(p, order, p.config.packages.find((k) => k.id === order.package_id) ?? pkg, openid, request.log)
        placed = await db.updateTable('orders').set(answer).where('id', '=', order.id).returningAll().executeTakeFirstOrThrow()
      } catch (err) {
        // Without a key nobody can come back for this order (and nobody was shown a way to pay it): it goes. With a key,
        // it stays for the retry to place (an order never placed is closed by the poller once it expires).
        if (key === undefined) await deleteUnplacedOrder(db, order.id)
        throw err
      }
    }
    request.log.info({ order_no: placed.order_no, user_id: userId, package_id: packageId, channel, replayed, simulated: placed.simulated }, replayed ? 'order replayed from its idempotency key' : 'order placed')
    return { ...orderView(placed), pay: payParams(p, placed) }
  })

  app.get('/api/billing/orders', {
    schema: {
      tags: ['billing'],
      summary: 'The caller\'s orders, newest first',
      security: [{ bearer: [] }],
      querystring: PaginationQuerySchema,
      response: { 200: Type.Array(OrderSchema), ...problems(400, 401) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const rows = await listOrders(db, { userId: request.user.id, limit: request.query.limit, beforeId: request.query.before_id })
    return rows.map(orderView)
  })

  app.get('/api/billing/orders/:order_no', {
    schema: {
      tags: ['billing'],
      summary: 'One of the caller\'s orders (a pending one older than 10 s is first checked with WeChat Pay, at most every 10 s)',
      security: [{ bearer: [] }],
      params: OrderParamsSchema,
      response: { 200: OrderSchema, ...problems(400, 401, 404) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const order = await selectOrder(db, request.params.order_no)
    if (!order || order.user_id !== request.user.id) throw notFound('order')
    return orderView(await refreshOrderOnRead(p, order, request.log))
  })

  if (p.provider?.simulated === true && p.provider.paidNotification) {
    const paidNotification = p.provider.paidNotification
    app.post('/api/billing/orders/:order_no/simulate-paid', {
      schema: {
        tags: ['billing'],
        summary: 'Development only (the payment simulator, no WeChat Pay merchant configured): pay a pending order through the real callback path',
        security: [{ bearer: [] }],
        params: OrderParamsSchema,
        response: { 200: OrderSchema, ...problems(400, 401, 404, 502) }
      },
      onRequest: app.authenticate
    }, async (request) => {
      const order = await selectOrder(db, request.params.order_no)
      if (!order || order.user_id !== request.user.id) throw notFound('order')
      if (order.status === 'paid') return orderView(order)
      if (order.status === 'closed') throw validationFailed('/params/order_no', 'is closed: it can no longer be paid')
      // The simulator signs and encrypts a TRANSACTION.SUCCESS callback as WeChat Pay would; it goes through the
      // notify route itself (raw body, signature, decryption, matching, exactly-once settlement).
      const notification = await paidNotification(order)
      const res = await app.inject({ method: 'POST', url: '/api/billing/wechatpay/notify', headers: { ...notification.headers, 'x-request-id': String(request.id) }, payload: notification.body })
      if (res.statusCode !== 204 && res.statusCode !== 200) {
        throw new ProblemError('upstream_error', `The simulated callback was refused (${res.statusCode}): ${res.body.slice(0, 200)}`)
      }
      return orderView((await selectOrder(db, order.order_no))!)
    })
  }
}

async function placeWithWechatPay (p: Payments, order: Order, pkg: Parameters<typeof placeOrder>[2], openid: string | null, log: { warn: (o: object, m: string) => void }) {
  try {
    return await placeOrder(p, order, pkg, openid)
  } catch (err) {
    const e = err as Error & { kind?: string, code?: string, status?: number }
    log.warn({ order_no: order.order_no, err: e.message, kind: e.kind, code: e.code }, 'WeChat Pay refused or missed the order')
    if (e.kind === 'timeout' || e.kind === 'network') throw new ProblemError('service_unavailable', 'WeChat Pay cannot be reached right now; try again shortly.', { cause: err })
    throw new ProblemError('upstream_error', 'WeChat Pay refused the order; try again shortly.', { cause: err })
  }
}
