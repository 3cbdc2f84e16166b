// POST /api/billing/wechatpay/notify: WeChat Pay's payment callback (public, no JWT). The signature covers the raw body
// bytes, so this plugin keeps them as a Buffer; a trusted SUCCESS is settled through settleOrder (exactly once).
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { WechatPayNotifyErrorSchema } from '@chat-platform/contracts'
import { WechatPayNotificationError, type Transaction } from '@chat-platform/wechatpay'
import type { BillingDeps } from '../deps.ts'
import { settleOrder } from '../payments/orders.ts'

const count = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1)

/** WeChat Pay's error format: any non-2xx answer makes it deliver the callback again (for about a day). */
const fail = (reply: FastifyReply, status: number, code: string, message: string) => reply.code(status).send({ code, message })

export async function wechatpayNotifyRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const p = opts.deps.payments
  const stats = p.stats.callbacks

  // This plugin only: every body is kept as the bytes that arrived (the signature is over them, not over a re-encoding).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })

  app.post('/api/billing/wechatpay/notify', {
    schema: {
      tags: ['billing'],
      summary: 'WeChat Pay\'s payment callback (public; trusted only by its signature, then matched against the order)',
      response: { 204: Type.Null(), 400: WechatPayNotifyErrorSchema, 401: WechatPayNotifyErrorSchema, 500: WechatPayNotifyErrorSchema, 503: WechatPayNotifyErrorSchema }
    }
  }, async (request, reply) => {
    const client = p.provider?.client
    if (!client) {
      count(stats, 'unconfigured')
      return fail(reply, 503, 'FAIL', 'payments are not configured on this server')
    }
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    let tx: Transaction
    try {
      tx = client.verifyNotification(request.headers, raw)
    } catch (err) {
      if (err instanceof WechatPayNotificationError && err.reason === 'not_success') {
        // Genuine, but not a payment (e.g. a refund's notification): nothing to do, and no reason to hear it again.
        count(stats, 'not_success')
        request.log.info({ event_type: err.eventType }, 'WeChat Pay notification that is not a payment: ignored')
        return reply.code(204).send(null)
      }
      const reason = err instanceof WechatPayNotificationError ? err.reason : 'error'
      count(stats, 'rejected')
      request.log.warn({ reason, err: (err as Error).message, serial: request.headers['wechatpay-serial'] }, 'WeChat Pay callback refused: not trusted')
      const status = reason === 'malformed' || reason === 'missing_headers' ? 400 : 401
      return fail(reply, status, reason === 'malformed' ? 'PARAM_ERROR' : 'SIGN_ERROR', `callback not accepted: ${reason}`)
    }
    try {
      const { outcome } = await settleOrder(p, tx, 'notify', request.log)
      count(stats, outcome)
      // A mismatch or an unknown order is answered 204 too: the callback was genuine and is recorded (the order
      // flagged, or the payment logged); hearing it again would change nothing.
      return reply.code(204).send(null)
    } catch (err) {
      count(stats, 'failed')
      request.log.error({ err, order_no: tx.out_trade_no }, 'settling a WeChat Pay callback failed; WeChat Pay will retry')
      return fail(reply, 500, 'FAIL', 'temporarily unable to record the payment')
    }
  })
}
