// /internal/usage: what usage chat recorded, and re-publishing it (for `pnpm ops usage:reconcile`). Never routed by the gateway.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { namespaced, ProblemSchema, Subjects, type UsageRecorded } from '@chat-platform/contracts'
import { requeueOutbox, validationFailed, writeOutbox } from '@chat-platform/platform'
import type { ChatConfig } from '../config.ts'
import type { ChatDeps } from '../deps.ts'
import { SCHEMA } from '../db/database.ts'
import { findUsageByIds, listUsageBetween } from '../db/repositories/usage.ts'
import { countStalePending } from '../db/repositories/exchanges.ts'

const UsageQuerySchema = Type.Object({
  since: Type.String({ format: 'date-time' }),
  until: Type.Optional(Type.String({ format: 'date-time' }))
})
const UsageListSchema = Type.Object({
  events: Type.Array(Type.Object({ event_id: Type.String(), occurred_at: Type.String() })),
  /** Exchanges (any time) still pending with their lease expired: a process died before charging them; the sweeper settles them. */
  pending: Type.Object({ count: Type.Integer(), oldest: Type.Union([Type.String(), Type.Null()]) })
})
const RepublishBodySchema = Type.Object({ event_ids: Type.Array(Type.String({ format: 'uuid' }), { maxItems: 10_000 }) })
const RepublishResponseSchema = Type.Object({ requeued: Type.Integer() })

export async function internalUsageRoutes (fastify: FastifyInstance, opts: { deps: ChatDeps, config: ChatConfig }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = opts.deps
  const subject = namespaced(opts.config.EVENTS_NAMESPACE).subject(Subjects.usageRecorded)

  app.get('/internal/usage', {
    schema: { querystring: UsageQuerySchema, response: { 200: UsageListSchema, 400: ProblemSchema } }
  }, async (request) => {
    const q = request.query
    const since = new Date(q.since)
    const until = q.until ? new Date(q.until) : undefined
    if (until && until < since) throw validationFailed('/querystring/until', 'must not be before since')
    const [rows, pending] = await Promise.all([listUsageBetween(db, since, until), countStalePending(db)])
    return {
      events: rows.map((r) => ({ event_id: r.event_id, occurred_at: r.occurred_at.toISOString() })),
      pending: { count: pending.count, oldest: pending.oldest?.toISOString() ?? null }
    }
  })

  app.post('/internal/usage/republish', {
    schema: { body: RepublishBodySchema, response: { 200: RepublishResponseSchema, 400: ProblemSchema } }
  }, async (request) => {
    const ids = [...new Set(request.body.event_ids)]
    const usage = await findUsageByIds(db, ids)
    if (usage.length === 0) return { requeued: 0 }
    return await db.transaction().execute(async (trx) => {
      const requeued = await requeueOutbox(trx, SCHEMA, usage.map((u) => u.event_id))
      // Outbox rows are pruned after OUTBOX_RETENTION_DAYS; the usage row rebuilds the same event (same id).
      const present = new Set((await trx.selectFrom('outbox').select('id').where('id', 'in', usage.map((u) => u.event_id)).execute()).map((r) => r.id))
      let rebuilt = 0
      for (const u of usage) {
        if (present.has(u.event_id)) continue
        const event: UsageRecorded = {
          event_id: u.event_id,
          occurred_at: u.occurred_at.toISOString(),
          user_id: u.user_id,
          session_id: u.session_id,
          message_id: u.message_id,
          model: u.model,
          prompt_tokens: u.prompt_tokens,
          completion_tokens: u.completion_tokens,
          usage_source: u.usage_source,
          ...(u.estimated_amount === null ? {} : { estimated_amount: u.estimated_amount }),
          ...(u.simulated ? { simulated: true as const } : {})
        }
        await writeOutbox(trx, SCHEMA, subject, event, String(request.id))
        rebuilt++
      }
      return { requeued: requeued + rebuilt }
    })
  })
}
