// /internal/usage: what usage chat recorded, and re-publishing it (for `pnpm ops usage:reconcile`). Never routed by the gateway;
// the schemas are contracts' InternalEndpoints.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { InternalEndpoints, namespaced, Subjects, type UsageRecorded } from '@chat-platform/contracts'
import { internalRouteSchema, requeueOutbox, validationFailed, writeOutbox } from '@chat-platform/platform'
import type { ChatConfig } from '../config.ts'
import type { ChatDeps } from '../deps.ts'
import { SCHEMA } from '../db/database.ts'
import { findUsageByIds, listUsageBetween } from '../db/repositories/usage.ts'
import { countStalePending } from '../db/repositories/exchanges.ts'

export async function internalUsageRoutes (fastify: FastifyInstance, opts: { deps: ChatDeps, config: ChatConfig }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = opts.deps
  const subject = namespaced(opts.config.EVENTS_NAMESPACE).subject(Subjects.usageRecorded)

  const { usage: usageList, usageRepublish } = InternalEndpoints

  app.get(usageList.url, { schema: internalRouteSchema(usageList) }, async (request) => {
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

  app.post(usageRepublish.url, { schema: internalRouteSchema(usageRepublish) }, async (request) => {
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
          ...(u.simulated ? { simulated: true as const } : {}),
          ...(u.purpose === 'title' ? { purpose: 'title' as const } : {})
        }
        await writeOutbox(trx, SCHEMA, subject, event, String(request.id))
        rebuilt++
      }
      return { requeued: requeued + rebuilt }
    })
  })
}
