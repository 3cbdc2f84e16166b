// Internal routes (never routed by the gateway): balances (with chat_applied) for auth and chat, applied usage for usage:reconcile.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { InternalBalanceSchema, Subjects } from '@chat-platform/contracts'
import { notFound } from '@chat-platform/platform'
import type { BillingDeps } from '../deps.ts'
import { balanceOf } from '../post.ts'
import { listProcessedEventIds } from '../db/repositories/processed-events.ts'
import { problems, UsageEventsQuerySchema, UsageEventsResponseSchema, UserIdParamsSchema } from './schemas.ts'

export async function internalRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, rules } = opts.deps

  app.get('/internal/balances/:user_id', {
    schema: { hide: true, params: UserIdParamsSchema, response: { 200: InternalBalanceSchema, ...problems(400, 404) } }
  }, async (request) => {
    const userId = request.params.user_id
    if (!(await opts.deps.knownUser(userId, String(request.id)))) throw notFound('user')
    // A read is how the cache gets warm again after its TTL.
    const acc = await balanceOf(opts.deps, userId, rules, { warm: true, log: request.log })
    return { user_id: userId, balance: acc.balance, chat_applied: acc.chat_applied }
  })

  app.get('/internal/usage-events', {
    schema: { hide: true, querystring: UsageEventsQuerySchema, response: { 200: UsageEventsResponseSchema, ...problems(400) } }
  }, async (request) => {
    const { since, until } = request.query
    return { event_ids: await listProcessedEventIds(db, Subjects.usageRecorded, new Date(since), until === undefined ? undefined : new Date(until)) }
  })
}
