// GET /api/billing/transactions: the caller's ledger, newest first, paginated with limit and before_id.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { PaginationQuerySchema, TransactionSchema } from '@chat-platform/contracts'
import type { BillingDeps } from '../deps.ts'
import { listTransactions } from '../db/repositories/transactions.ts'
import { problems } from './schemas.ts'

export async function transactionRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = opts.deps

  app.get('/api/billing/transactions', {
    schema: {
      tags: ['billing'],
      summary: 'The caller\'s ledger rows, newest first',
      security: [{ bearer: [] }],
      querystring: PaginationQuerySchema,
      response: { 200: Type.Array(TransactionSchema), ...problems(400, 401) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const rows = await listTransactions(db, request.user.id, { limit: request.query.limit, beforeId: request.query.before_id })
    return rows.map((r) => ({ ...r, created_at: r.created_at.toISOString() }))
  })
}
