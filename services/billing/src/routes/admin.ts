// Admin routes of billing: POST /api/admin/adjustments (a signed ledger delta) and GET /api/admin/users/{id}/transactions.
import { createHash, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdjustmentBodySchema, AdminTransactionSchema, AdminUserParamsSchema, PaginationQuerySchema, type AdminTransaction } from '@chat-platform/contracts'
import { ProblemError, notFound, requireAdmin, validationFailed } from '@chat-platform/platform'
import type { BillingDeps } from '../deps.ts'
import { postEntries, type Balances } from '../ledger.ts'
import { commitAndCache } from '../post.ts'
import { claimIdempotencyKey, saveIdempotentResponse, selectIdempotencyKey } from '../db/repositories/idempotency-keys.ts'
import { listAdminTransactions, selectAdminTransactionBySource } from '../db/repositories/transactions.ts'
import { problems, RechargeHeadersSchema } from './schemas.ts'

export const adjustmentDescription = (reason: string) => `管理员调整 · ${reason}`

type Row = NonNullable<Awaited<ReturnType<typeof selectAdminTransactionBySource>>>
const toAnswer = (r: Row): AdminTransaction => ({ ...r, created_at: r.created_at.toISOString() })
const conflict = () => new ProblemError('idempotency_conflict', 'This Idempotency-Key was already used with a different request body.')

export async function adminRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { deps } = opts

  app.post('/api/admin/adjustments', {
    schema: {
      tags: ['admin'],
      summary: 'Add a signed correction to a user\'s balance (admin); answers the ledger row',
      security: [{ bearer: [] }],
      headers: RechargeHeadersSchema,
      body: AdjustmentBodySchema,
      response: { 200: AdminTransactionSchema, ...problems(400, 401, 403, 404, 409) }
    },
    onRequest: [app.authenticate, requireAdmin]
  }, async (request) => {
    const admin = request.user.id
    const { user_id: target, amount } = request.body
    const reason = request.body.reason.trim()
    if (!reason) throw validationFailed('/body/reason', 'must not be blank')
    if (!(await deps.knownUser(target, String(request.id)))) throw notFound('user')
    const key = request.headers['idempotency-key']
    // Keys are the admin's, in their own namespace (a recharge with the same key is another request).
    const stored = key === undefined ? undefined : `adjustment:${key}`
    const hash = createHash('sha256').update(JSON.stringify({ user_id: target, amount, reason })).digest('hex')
    const sourceId = key === undefined ? `adjustment:${randomUUID()}` : `adjustment:${admin}:${key}`

    const outcome = await commitAndCache(deps, async (trx): Promise<{ replayed: AdminTransaction } | { answer: AdminTransaction, balances: Balances }> => {
      if (stored !== undefined && !(await claimIdempotencyKey(trx, admin, stored, hash))) {
        const first = await selectIdempotencyKey(trx, admin, stored)
        if (!first || first.request_hash !== hash) throw conflict()
        return { replayed: first.response_body as AdminTransaction }
      }
      if (stored !== undefined) {
        // The key record may have been swept while the ledger keeps the row it made: that row is the first answer.
        const made = await selectAdminTransactionBySource(trx, 'adjustment', sourceId)
        if (made) {
          if (made.user_id !== target || made.change_amount !== amount || made.reason !== reason) throw conflict()
          const answer = toAnswer(made)
          await saveIdempotentResponse(trx, admin, stored, 200, answer)
          return { replayed: answer }
        }
      }
      // A negative adjustment may take the balance below zero: it is an operator's correction (README).
      const balances = await postEntries(trx, [{
        user_id: target, change_amount: amount, kind: 'adjustment', description: adjustmentDescription(reason), source_id: sourceId, admin_id: admin, reason
      }], deps.rules)
      const answer = toAnswer((await selectAdminTransactionBySource(trx, 'adjustment', sourceId))!)
      if (stored !== undefined) await saveIdempotentResponse(trx, admin, stored, 200, answer)
      return { answer, balances }
    }, request.log)
    if ('replayed' in outcome) return outcome.replayed
    request.log.info({ user_id: target, amount, by: admin, transaction_id: outcome.answer.id }, 'balance adjusted')
    return outcome.answer
  })

  app.get('/api/admin/users/:id/transactions', {
    schema: {
      tags: ['admin'],
      summary: 'A user\'s ledger rows with their kind, source and provenance, newest first (admin)',
      security: [{ bearer: [] }],
      params: AdminUserParamsSchema,
      querystring: PaginationQuerySchema,
      response: { 200: Type.Array(AdminTransactionSchema), ...problems(400, 401, 403) }
    },
    onRequest: [app.authenticate, requireAdmin]
  }, async (request) => {
    const rows = await listAdminTransactions(deps.db, request.params.id, { limit: request.query.limit, beforeId: request.query.before_id })
    return rows.map(toAnswer)
  })
}
