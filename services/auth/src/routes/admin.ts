// GET /api/admin/users?query=: find users by email or nickname substring, or by id (admin only; deleted accounts are gone from users).
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdminUserSchema, AdminUsersQuerySchema } from '@chat-platform/contracts'
import { requireAdmin } from '@chat-platform/platform'
import type { Database } from '../db/database.ts'
import { searchUsers } from '../db/repositories/users.ts'
import { problems } from './schemas.ts'

export async function adminRoutes (fastify: FastifyInstance, opts: { db: Kysely<Database> }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()

  app.get('/api/admin/users', {
    schema: {
      tags: ['admin'],
      summary: 'Users whose email or nickname contains `query`, or whose id it is, newest first (admin)',
      security: [{ bearer: [] }],
      querystring: AdminUsersQuerySchema,
      response: { 200: Type.Array(AdminUserSchema), ...problems(400, 401, 403) }
    },
    onRequest: [app.authenticate, requireAdmin]
  }, async (request) => {
    const rows = await searchUsers(opts.db, { query: request.query.query?.trim() ?? '', limit: request.query.limit, beforeId: request.query.before_id })
    return rows.map((u) => ({ ...u, created_at: u.created_at.toISOString() }))
  })
}
