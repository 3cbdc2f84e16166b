// /api/user/password: change the password (the old one required), every other session ends; /api/user/account: delete the account.
import type { FastifyInstance } from 'fastify'
import type { Counter } from 'prom-client'
import type { Kysely } from 'kysely'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { ChangePasswordBodySchema, ChangePasswordResponseSchema, DeleteAccountBodySchema, MessageResponseSchema } from '@chat-platform/contracts'
import { ProblemError, unauthorized, validationFailed } from '@chat-platform/platform'
import type { AuthConfig } from '../config.ts'
import type { Database } from '../db/database.ts'
import { findUserById, setUserPasswordHash } from '../db/repositories/users.ts'
import { findRefreshFamily } from '../db/repositories/sessions.ts'
import { writeUserDeleted } from '../events/user-deleted.ts'
import { hashPassword, passwordHashing, verifyPassword } from '../passwords.ts'
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

/** An account without a password is deleted only by someone who logged in this recently. */
export const RECENT_LOGIN_MS = 10 * 60_000

export async function accountRoutes (fastify: FastifyInstance, opts: AccountRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, config, throttle, verifications } = opts
  const lifetimes = { ttlSeconds: config.JWT_TTL, adminTtlSeconds: config.ADMIN_JWT_TTL }
  const context = (requestId: string): SessionContext => ({ db, eventsNamespace: config.EVENTS_NAMESPACE, accessTtlSeconds: config.JWT_TTL, requestId })

  app.put('/api/user/password', {
    schema: {
      tags: ['user'],
      summary: 'Change the password (the old one required); every other session of the user ends',
      security: [{ bearer: [] }],
      body: ChangePasswordBodySchema,
      response: { 200: ChangePasswordResponseSchema, ...problems(400, 401, 429, 503) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const user = await findUserById(db, request.user.id)
    if (!user) throw unauthorized('The account behind this token no longer exists.')
    if (!user.email || !user.password_hash) throw validationFailed('/old_password', 'this account has no password (it signs in with WeChat)')
    passwordHashing.ensureRoom()
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

  app.delete('/api/user/account', {
    schema: {
      tags: ['user'],
      summary: 'Delete the account: personal data and chat content go, the ledger stays',
      security: [{ bearer: [] }],
      body: DeleteAccountBodySchema,
      response: { 200: MessageResponseSchema, ...problems(400, 401, 403, 429, 503) }
    },
    onRequest: app.authenticate,
    // The body is optional for an account without a password: none at all means {}.
    preValidation: async (request) => { request.body ??= {} }
  }, async (request) => {
    const user = await findUserById(db, request.user.id)
    if (!user) throw unauthorized('The account behind this token no longer exists.')
    if (user.password_hash) {
      const password = request.body.password
      if (!password) throw validationFailed('/password', 'is required to delete an account with a password')
      const key = user.email ?? `user:${user.id}`
      passwordHashing.ensureRoom()
      await throttle.attempt(key, request.ip)
      let ok: boolean
      try {
        ok = await verifyPassword(user.password_hash, password, () => verifications.inc())
      } catch (err) {
        await throttle.undo(key, request.ip)
        throw err
      }
      if (!ok) throw new ProblemError('invalid_credentials', 'The password is wrong.')
      await throttle.succeeded(key, request.ip)
    } else {
      // No password to ask for (WeChat only): the caller must have logged in within the last 10 minutes. The
      // session's start is the login (a refreshed token is newer than the login); a token without one: its iat.
      const family = request.user.sid ? await findRefreshFamily(db, request.user.sid) : undefined
      const loginAt = family ? family.created_at.getTime() : request.user.iat * 1000
      if (Date.now() - loginAt > RECENT_LOGIN_MS) throw new ProblemError('forbidden', 'Log in again (within the last 10 minutes) to delete this account.')
    }
    const ctx = context(request.id)
    await db.transaction().execute(async (trx) => {
      await endAllSessions(trx, ctx, user.id, 'account_deleted', { everything: true })
      if (user.email) await trx.deleteFrom('email_code_sends').where('email', '=', user.email).execute()
      // Its WeChat identities, sessions, refresh tokens and codes go with it (on delete cascade).
      await trx.deleteFrom('users').where('id', '=', user.id).execute()
      await writeUserDeleted(trx, config.EVENTS_NAMESPACE, user.id, request.id)
    })
    request.log.info({ user_id: user.id }, 'account deleted')
    return { message: '账号已删除' }
  })
}
