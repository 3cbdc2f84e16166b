// GET /api/billing/usage (the caller's usage report) and GET /api/admin/usage (everyone's, admin).
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { UsageReportQuerySchema, UsageReportRowSchema } from '@chat-platform/contracts'
import { requireAdmin } from '@chat-platform/platform'
import type { BillingConfig } from '../config.ts'
import type { BillingDeps } from '../deps.ts'
import { resolveRange, usageReport } from '../usage-report.ts'
import { problems } from './schemas.ts'

export async function usageRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps, config: BillingConfig }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = opts.deps
  const tz = opts.config.USAGE_TIMEZONE
  const description = `[from, to): a date (its midnight in USAGE_TIMEZONE, now ${tz}) or a date-time; default the 30 days before now, at most 366 days`

  app.get('/api/billing/usage', {
    schema: {
      tags: ['billing'],
      summary: 'The caller\'s usage (exchanges, tokens, amount charged) per day or per model',
      description,
      security: [{ bearer: [] }],
      querystring: UsageReportQuerySchema,
      response: { 200: Type.Array(UsageReportRowSchema), ...problems(400, 401) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const range = await resolveRange(db, request.query, tz)
    return await usageReport(db, { userId: request.user.id, ...range, groupBy: request.query.group_by, tz })
  })

  app.get('/api/admin/usage', {
    schema: {
      tags: ['admin'],
      summary: 'Every user\'s usage per day or per model (admin)',
      description,
      security: [{ bearer: [] }],
      querystring: UsageReportQuerySchema,
      response: { 200: Type.Array(UsageReportRowSchema), ...problems(400, 401, 403) }
    },
    onRequest: [app.authenticate, requireAdmin]
  }, async (request) => {
    const range = await resolveRange(db, request.query, tz)
    return await usageReport(db, { ...range, groupBy: request.query.group_by, tz })
  })
}
