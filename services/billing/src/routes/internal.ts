// Internal routes (never routed by the gateway), as contracts' InternalEndpoints declare them: balances (with
// chat_applied) for auth and chat, applied usage for usage:reconcile.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { InternalEndpoints, Subjects } from '@chat-platform/contracts'
import { internalRouteSchema, notFound } from '@chat-platform/platform'
import type { BillingDeps } from '../deps.ts'
import { balanceOf } from '../post.ts'
import { listProcessedEventIds } from '../db/repositories/processed-events.ts'

export async function internalRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, rules } = opts.deps
  const { balance, usageEvents } = InternalEndpoints

  app.get(balance.url, { schema: internalRouteSchema(balance) }, async (request) => {
    const userId = request.params.user_id
    if (!(await opts.deps.knownUser(userId, String(request.id)))) throw notFound('user')
    // A read is how the cache gets warm again after its TTL.
    const acc = await balanceOf(opts.deps, userId, rules, { warm: true, log: request.log })
    return { user_id: userId, balance: acc.balance, chat_applied: acc.chat_applied }
  })

  app.get(usageEvents.url, { schema: internalRouteSchema(usageEvents) }, async (request) => {
    const { since, until } = request.query
    return { event_ids: await listProcessedEventIds(db, Subjects.usageRecorded, new Date(since), until === undefined ? undefined : new Date(until)) }
  })
}
