// Internal routes (never routed by the gateway): billing asks whether a user id exists before it opens an account.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { Id } from '@chat-platform/contracts'
import { notFound } from '@chat-platform/platform'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { findUserById } from '../db/repositories/users.ts'

export async function internalRoutes (fastify: FastifyInstance, opts: { db: Kysely<Database> }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  app.get('/internal/users/:user_id', {
    schema: { hide: true, params: Type.Object({ user_id: Id }), response: { 200: Type.Object({ id: Id }) } } as never,
    logLevel: 'warn'
  }, async (request) => {
    const { user_id: userId } = request.params as { user_id: number }
    const user = await findUserById(opts.db, userId)
    if (!user) throw notFound('user')
    return { id: user.id }
  })
}
