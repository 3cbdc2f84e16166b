// GET /api/admin/orders?status=pending|paid|closed|flagged: orders of every user for an admin (role checked here too).
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdminOrderSchema, AdminOrdersQuerySchema, type AdminOrderView } from '@chat-platform/contracts'
import { requireAdmin } from '@chat-platform/platform'
import type { BillingDeps } from '../deps.ts'
import type { Order } from '../db/database.ts'
import { listOrders } from '../db/repositories/orders.ts'
import { orderView } from './orders.ts'
import { problems } from './schemas.ts'

function adminOrderView (o: Order): AdminOrderView {
  const view: AdminOrderView = {
    ...orderView(o),
    user_id: o.user_id,
    transaction_id: o.transaction_id,
    simulated: o.simulated,
    flagged: o.flagged,
    flag_reason: o.flag_reason
  }
  if (o.closed_at) view.closed_at = o.closed_at.toISOString()
  return view
}

export async function adminOrderRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = opts.deps

  app.get('/api/admin/orders', {
    schema: {
      tags: ['admin'],
      summary: 'Orders of every user, newest first; status=flagged lists those waiting for an operator',
      security: [{ bearer: [] }],
      querystring: AdminOrdersQuerySchema,
      response: { 200: Type.Array(AdminOrderSchema), ...problems(400, 401, 403) }
    },
    onRequest: [app.authenticate, requireAdmin]
  }, async (request) => {
    const { status, limit, before_id: beforeId } = request.query
    const rows = await listOrders(db, {
      status: status === 'flagged' ? undefined : status,
      flagged: status === 'flagged',
      limit,
      beforeId
    })
    return rows.map(adminOrderView)
  })
}
