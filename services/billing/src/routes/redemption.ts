// POST /api/admin/redemption-codes (an admin makes a batch, shown once) and POST /api/billing/redeem (a user redeems one code).
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { CreateRedemptionCodesBodySchema, CreateRedemptionCodesResponseSchema, RedeemBodySchema, RedeemResponseSchema } from '@chat-platform/contracts'
import { ProblemError, requireAdmin, unauthorized, validationFailed } from '@chat-platform/platform'
import type { BillingConfig } from '../config.ts'
import type { BillingDeps } from '../deps.ts'
import { commitAndCache } from '../post.ts'
import { createBatch, redeemCode } from '../redemption.ts'
import { RedeemThrottle } from '../redeem-throttle.ts'
import { problems } from './schemas.ts'

export async function redemptionRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps, config: BillingConfig }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { deps } = opts
  const throttle = new RedeemThrottle(deps.redis, { max: opts.config.REDEEM_MAX_FAILURES, windowSeconds: opts.config.REDEEM_FAILURE_WINDOW_SECONDS }, app.log)

  app.post('/api/admin/redemption-codes', {
    schema: {
      tags: ['admin'],
      summary: 'Make a batch of redemption codes (admin); the codes are shown only in this answer',
      security: [{ bearer: [] }],
      body: CreateRedemptionCodesBodySchema,
      response: { 200: CreateRedemptionCodesResponseSchema, ...problems(400, 401, 403) }
    },
    onRequest: [app.authenticate, requireAdmin]
  }, async (request) => {
    const { tokens, count, note } = request.body
    const expiresAt = request.body.expires_at === undefined ? null : new Date(request.body.expires_at)
    if (expiresAt !== null && expiresAt.getTime() <= Date.now()) throw validationFailed('/body/expires_at', 'must be in the future')
    const batch = await deps.db.transaction().execute((trx) => createBatch(trx, {
      admin_id: request.user.id, tokens, count, expires_at: expiresAt, note: note?.trim() || null
    }))
    // The codes themselves are never logged.
    request.log.info({ batch_id: batch.batch_id, count, tokens, by: request.user.id }, 'redemption codes created')
    return batch
  })

  app.post('/api/billing/redeem', {
    schema: {
      tags: ['billing'],
      summary: 'Redeem a code for tokens (failed attempts are limited per user)',
      security: [{ bearer: [] }],
      body: RedeemBodySchema,
      response: { 200: RedeemResponseSchema, ...problems(400, 401, 404, 409, 429) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const userId = request.user.id
    if (!(await deps.knownUser(userId, String(request.id)))) throw unauthorized('The bearer token is invalid or expired.')
    // Counted before the code is looked up (parallel guesses count like sequential ones); a redemption gives it back.
    await throttle.attempt(userId)
    let outcome
    try {
      outcome = await commitAndCache(deps, (trx) => redeemCode(trx, userId, request.body.code, deps.rules), request.log)
    } catch (err) {
      // A wrong, used or expired code is a failed attempt and stays counted; anything else (Postgres away) is no verdict.
      if (!(err instanceof ProblemError)) await throttle.release(userId)
      throw err
    }
    await throttle.release(userId)
    const balance = outcome.balances.get(userId)!.balance
    request.log.info({ user_id: userId, tokens: outcome.tokens }, 'code redeemed')
    return { message: '兑换成功', balance, tokens: outcome.tokens }
  })
}
