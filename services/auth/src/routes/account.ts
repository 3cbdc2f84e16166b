// /api/user/password: change the password (the old one required); every session of the user ends, the caller gets a fresh one.
import type { FastifyInstance } from 'fastify'
import type { Counter } from 'prom-client'
import type { Kysely } from 'kysely'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { ChangePasswordBodySchema, ChangePasswordResponseSchema } from '@chat-platform/contracts'
import { ProblemError, unauthorized, validationFailed } from '@chat-platform/platform'
import type { AuthConfig } from '../config.ts'
import type { Database } from '../db/database.ts'
import { findUserById, setUserPasswordHash } from '../db/repositories/users.ts'
import { hashPassword, verifyPassword } from '../passwords.ts'
import { issueAccessToken } from '../access-token.ts'
import { endAllSessions, startSessionIn, type SessionContext } from '../sessions.ts'
import type { LoginThrottle } from '../login-throttle.ts'
import { problems } from './schemas.ts'

export interface AccountRoutesOptions {
  db: Kysely<Database>
  config: AuthConfig
  throttle: LoginThrottle
  verifications: Counter
}

export async function accountRoutes (fastify: FastifyInstance, opts: AccountRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, config, throttle, verifications } = opts
  const lifetimes = { ttlSeconds: config.JWT_TTL, adminTtlSeconds: config.ADMIN_JWT_TTL }
  const context = (requestId: string): SessionContext => ({ db, eventsNamespace: config.EVENTS_NAMESPACE, accessTtlSeconds: config.JWT_TTL, requestId })

  app.put('/api/user/password', {
    schema: {
      tags: ['user'],
      security: [{ bearer: [] }],
      body: ChangePasswordBodySchema,
      response: { 200: ChangePasswordResponseSchema, ...problems(400, 401, 429) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const user = await findUserById(db, request.user.id)
    if (!user) throw unauthorized('The account behind this token no longer exists.')
    if (!user.email || !user.password_hash) throw validationFailed('/old_password', 'this account has no password (it signs in with WeChat)')
    // A stolen access token must not become a way to guess the password: counted like a login attempt.
    await throttle.attempt(user.email, request.ip)
    let ok: boolean
    try {
      ok = await verifyPassword(user.password_hash, request.body.old_password, () => verifications.inc())
    } catch (err) {
      await throttle.undo(user.email, request.ip)
      throw err
    }
    if (!ok) throw new ProblemError('invalid_credentials', 'The current password is wrong.')
    await throttle.succeeded(user.email, request.ip)
    const hash = await hashPassword(request.body.new_password)
    const ctx = context(request.id)
    const sid = await db.transaction().execute(async (trx) => {
      await setUserPasswordHash(trx, user.id, hash)
      await endAllSessions(trx, ctx, user.id, 'password_change')
      return await startSessionIn(trx, user.id)
    })
    request.log.info({ user_id: user.id }, 'password changed; every other session ended')
    return { message: '密码已修改', ...issueAccessToken(app, user, lifetimes, sid.sid), refresh_token: sid.refreshToken }
  })
}
