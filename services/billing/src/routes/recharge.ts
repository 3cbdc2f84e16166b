// POST /api/billing/recharge: credits tokens under RECHARGE_POLICY, idempotent with an Idempotency-Key.
import { createHash, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { RechargeBodySchema, RechargeResponseSchema } from '@chat-platform/contracts'
import { ProblemError, notFound, unauthorized } from '@chat-platform/platform'
import type { BillingConfig } from '../config.ts'
import type { BillingDeps } from '../deps.ts'
import { creditRecharge, type Balances } from '../ledger.ts'
import { commitAndCache } from '../post.ts'
import { claimIdempotencyKey, saveIdempotentResponse, selectIdempotencyKey } from '../db/repositories/idempotency-keys.ts'
import { selectTransactionBySource } from '../db/repositories/transactions.ts'
import { problems, RechargeHeadersSchema } from './schemas.ts'

interface RechargeAnswer { message: string, balance: number }

export async function rechargeRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps, config: BillingConfig }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { rules } = opts.deps
  const policy = opts.config.RECHARGE_POLICY

  app.post('/api/billing/recharge', {
    schema: {
      tags: ['billing'],
      summary: 'Top up a balance (the caller\'s, or under RECHARGE_POLICY=admin another user\'s)',
      security: [{ bearer: [] }],
      headers: RechargeHeadersSchema,
      body: RechargeBodySchema,
      response: { 200: RechargeResponseSchema, ...problems(400, 401, 403, 404, 409) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const caller = request.user
    const target = request.body.user_id ?? caller.id
    if (policy === 'admin' && caller.role !== 'admin') {
      throw new ProblemError('forbidden', 'Recharging is reserved to administrators (RECHARGE_POLICY=admin).')
    }
    if (policy === 'self' && target !== caller.id) {
      throw new ProblemError('forbidden', 'You may only recharge your own balance.')
    }
    if (!(await opts.deps.knownUser(target, String(request.id)))) {
      if (target === caller.id) throw unauthorized('The bearer token is invalid or expired.')
      throw notFound('user')
    }
    const amount = request.body.amount
    const key = request.headers['idempotency-key']
    // The key is scoped to the caller; the hash covers what the request asks for, after validation.
    const hash = createHash('sha256').update(JSON.stringify({ user_id: target, amount })).digest('hex')

    const outcome = await commitAndCache(opts.deps, async (trx): Promise<{ replayed: RechargeAnswer } | { answer: RechargeAnswer, balances: Balances }> => {
      if (key !== undefined && !(await claimIdempotencyKey(trx, caller.id, key, hash))) {
        const first = await selectIdempotencyKey(trx, caller.id, key)
        if (!first || first.request_hash !== hash) {
          throw new ProblemError('idempotency_conflict', 'This Idempotency-Key was already used with a different request body.')
        }
        return { replayed: first.response_body as RechargeAnswer }
      }
      const sourceId = key === undefined ? `recharge:${randomUUID()}` : `recharge:${caller.id}:${key}`
      if (key !== undefined) {
        // The key record may have expired (swept after IDEMPOTENCY_TTL_HOURS) while the ledger keeps the credit
        // it made: that row is the first answer (same user and amount: replay it; otherwise a conflict).
        const credited = await selectTransactionBySource(trx, 'recharge', sourceId)
        if (credited) {
          if (credited.user_id !== target || credited.change_amount !== amount) {
            throw new ProblemError('idempotency_conflict', 'This Idempotency-Key was already used with a different request body.')
          }
          const answer: RechargeAnswer = { message: '充值成功', balance: credited.balance_after }
          await saveIdempotentResponse(trx, caller.id, key, 200, answer)
          return { replayed: answer }
        }
      }
      const balances = await creditRecharge(trx, target, amount, sourceId, rules)
      const answer: RechargeAnswer = { message: '充值成功', balance: balances.get(target)!.balance }
      if (key !== undefined) await saveIdempotentResponse(trx, caller.id, key, 200, answer)
      return { answer, balances }
    }, request.log)
    if ('replayed' in outcome) {
      request.log.info({ user_id: target }, 'recharge replayed from its idempotency key')
      return outcome.replayed
    }
    request.log.info({ user_id: target, amount, by: caller.id }, 'recharged')
    return outcome.answer
  })
}
