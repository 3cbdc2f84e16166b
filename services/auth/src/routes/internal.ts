// Internal routes (never routed by the gateway), as contracts' InternalEndpoints declare them: billing asks whether
// a user id exists before it opens an account, and a user's openid in a WeChat app (WeChat Pay orders).
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { InternalEndpoints } from '@chat-platform/contracts'
import { internalRouteSchema, notFound } from '@chat-platform/platform'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { findUserById } from '../db/repositories/users.ts'
import { findOpenidOfUser } from '../db/repositories/wechat-identities.ts'

export async function internalRoutes (fastify: FastifyInstance, opts: { db: Kysely<Database> }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { user, wechatOpenid } = InternalEndpoints

  app.get(user.url, { schema: internalRouteSchema(user), logLevel: 'warn' }, async (request) => {
    const found = await findUserById(opts.db, request.params.user_id)
    if (!found) throw notFound('user')
    return { id: found.id }
  })

  app.get(wechatOpenid.url, { schema: internalRouteSchema(wechatOpenid), logLevel: 'warn' }, async (request) => {
    // A deleted user's identities went with the user row (cascade): no user, no openid.
    const openid = await findOpenidOfUser(opts.db, request.params.user_id, request.query.appid)
    if (openid === undefined) throw notFound('WeChat identity of this user in this app')
    return { openid }
  })
}
