// /api/user/profile: read and edit the caller's own profile (nickname, avatar_url; nothing else is writable).
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { ProfileSchema, ProfileUpdateBodySchema, type Profile } from '@chat-platform/contracts'
import { unauthorized, validationFailed, type Redis } from '@chat-platform/platform'
import type { AuthConfig } from '../config.ts'
import type { Database, User } from '../db/database.ts'
import { findUserById, updateUserProfile } from '../db/repositories/users.ts'
import { readTokens } from '../balances.ts'
import { problems, trimFields } from './schemas.ts'

export interface ProfileRoutesOptions { db: Kysely<Database>, redis: Redis, config: AuthConfig }

const toProfile = (user: User, tokens: number): Profile => ({
  id: user.id,
  email: user.email,
  nickname: user.nickname,
  avatar_url: user.avatar_url,
  tokens,
  created_at: user.created_at.toISOString(),
  updated_at: user.updated_at.toISOString()
})

export async function profileRoutes (fastify: FastifyInstance, opts: ProfileRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, redis, config } = opts
  const gone = () => unauthorized('The account behind this token no longer exists.')

  app.get('/api/user/profile', {
    schema: {
      tags: ['user'],
      summary: 'The caller\'s profile',
      security: [{ bearer: [] }],
      response: { 200: ProfileSchema, ...problems(401, 503) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const user = await findUserById(db, request.user.id)
    if (!user) throw gone()
    return toProfile(user, await readTokens(redis, config.BILLING_URL, user.id, { requestId: request.id, log: request.log }))
  })

  app.put('/api/user/profile', {
    schema: {
      tags: ['user'],
      summary: 'Change the nickname or avatar URL',
      security: [{ bearer: [] }],
      body: ProfileUpdateBodySchema,
      response: { 200: ProfileSchema, ...problems(400, 401, 503) }
    },
    onRequest: app.authenticate,
    preValidation: trimFields('nickname')
  }, async (request) => {
    // Only these two fields are read: anything else in the body (id, email, tokens, role, openid…) was
    // already dropped by the schema and is never written.
    const { nickname, avatar_url: avatarUrl } = request.body
    // The avatar is only stored and handed back, never fetched by us (no SSRF surface); it must still parse.
    if (avatarUrl !== undefined && !URL.canParse(avatarUrl)) throw validationFailed('/body/avatar_url', 'must be a valid http(s) URL')
    const fields: { nickname?: string, avatar_url?: string } = {}
    if (nickname !== undefined) fields.nickname = nickname
    if (avatarUrl !== undefined) fields.avatar_url = avatarUrl
    if (!await findUserById(db, request.user.id)) throw gone()
    // The balance is read before writing: a request answered with 503 has changed nothing.
    const tokens = await readTokens(redis, config.BILLING_URL, request.user.id, { requestId: request.id, log: request.log })
    const user = Object.keys(fields).length ? await updateUserProfile(db, request.user.id, fields) : await findUserById(db, request.user.id)
    if (!user) throw gone()
    return toProfile(user, tokens)
  })
}
