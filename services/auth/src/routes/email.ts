// Codes by mail: password reset (public) and email verification (bearer); the development mailbox (internal, never in production).
import type { FastifyInstance, FastifyBaseLogger } from 'fastify'
import type { Kysely } from 'kysely'
import { sql } from 'kysely'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { EmailVerifyBodySchema, InternalEndpoints, MessageResponseSchema, PasswordResetBodySchema, PasswordResetConfirmBodySchema } from '@chat-platform/contracts'
import { internalRouteSchema, ProblemError, unauthorized, validationFailed } from '@chat-platform/platform'
import { normalizeEmail, type AuthConfig } from '../config.ts'
import type { Database } from '../db/database.ts'
import { findUserByEmail, findUserById } from '../db/repositories/users.ts'
import { hashPassword, passwordHashing } from '../passwords.ts'
import { codeMail, consumeCode, issueCode } from '../email-codes.ts'
import { endAllSessions } from '../sessions.ts'
import { markEmailVerified } from '../accounts.ts'
import type { Mailer } from '../mail.ts'
import { problems } from './schemas.ts'

export interface EmailRoutesOptions { db: Kysely<Database>, config: AuthConfig, mailer: Mailer }

const RESET_ANSWER = '如果该邮箱已注册，验证码已发送 / if this address is registered, a code has been sent'
const codeInvalid = () => new ProblemError('code_invalid', 'The code is wrong, expired or used up; ask for a new one.')

/** Sends a verification code to a user's address without waiting (registration): a failure is logged, never the caller's. */
export function sendVerificationInBackground (db: Kysely<Database>, mailer: Mailer, user: { id: number, email: string }, log: FastifyBaseLogger): void {
  if (mailer.mode === 'off') return
  issueCode(db, user.email, { id: user.id, purpose: 'email_verification' })
    .then(async (r) => { if (r.sent && r.code) await mailer.send(codeMail(user.email, 'email_verification', r.code)) })
    .catch((err) => log.error({ err, user_id: user.id }, 'verification mail failed'))
}

export async function emailRoutes (fastify: FastifyInstance, opts: EmailRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, config, mailer } = opts
  const sessionCtx = (requestId: string) => ({ db, eventsNamespace: config.EVENTS_NAMESPACE, accessTtlSeconds: config.JWT_TTL, requestId })
  const needMail = () => {
    if (mailer.mode === 'off') throw new ProblemError('service_unavailable', 'Mail is not configured on this server.')
  }

  app.post('/api/auth/password-reset', {
    schema: { tags: ['auth'], summary: 'Mail a password-reset code (the same answer for unknown addresses)', body: PasswordResetBodySchema, response: { 200: MessageResponseSchema, ...problems(400, 503) } }
  }, async (request) => {
    needMail()
    const email = normalizeEmail(request.body.email)
    const user = await findUserByEmail(db, email)
    // The same work and the same answer whether the address is registered or not, over its hourly limit or not;
    // the mail leaves after the answer, so its time tells nothing either.
    const result = await issueCode(db, email, user ? { id: user.id, purpose: 'password_reset' } : undefined)
    if (result.sent && result.code) {
      mailer.send(codeMail(email, 'password_reset', result.code))
        .catch((err) => request.log.error({ err, user_id: user!.id }, 'password reset mail failed'))
    } else if (!result.sent) {
      request.log.warn({ user_id: user?.id }, 'password reset: hourly mail limit reached for the address')
    }
    return { message: RESET_ANSWER }
  })

  app.post('/api/auth/password-reset/confirm', {
    schema: { tags: ['auth'], summary: 'Set a new password with the mailed code; every session of the user ends', body: PasswordResetConfirmBodySchema, response: { 200: MessageResponseSchema, ...problems(400, 503) } }
  }, async (request) => {
    const email = normalizeEmail(request.body.email)
    // The new password is hashed inside the transaction, after the code is consumed: refused now (503, before the
    // lookup, so known and unknown addresses are refused alike), no transaction is opened; refused there, it rolls
    // back and the code stays unused.
    passwordHashing.ensureRoom()
    const user = await findUserByEmail(db, email)
    if (!user) throw codeInvalid()
    const ctx = sessionCtx(request.id)
    const ok = await db.transaction().execute(async (trx) => {
      if (!(await consumeCode(trx, user.id, 'password_reset', request.body.code))) return false
      await trx.updateTable('users')
        .set({ password_hash: await hashPassword(request.body.new_password), updated_at: sql<Date>`now()` })
        .where('id', '=', user.id).execute()
      // The code proved the address too.
      await markEmailVerified(trx, user.id, config.SIGNUP_BONUS_ON, { eventsNamespace: config.EVENTS_NAMESPACE, requestId: request.id })
      await endAllSessions(trx, ctx, user.id, 'password_reset')
      return true
    })
    if (!ok) throw codeInvalid()
    request.log.info({ user_id: user.id }, 'password reset; every session ended')
    return { message: '密码已重置，请重新登录 / password reset, log in again' }
  })

  app.post('/api/auth/email/verification', {
    schema: { tags: ['auth'], summary: 'Mail a code that verifies the caller\'s email address', security: [{ bearer: [] }], response: { 200: MessageResponseSchema, ...problems(400, 401, 429, 503) } },
    onRequest: app.authenticate
  }, async (request, reply) => {
    const user = await findUserById(db, request.user.id)
    if (!user) throw unauthorized('The account behind this token no longer exists.')
    if (!user.email) throw validationFailed('/', 'this account has no email address')
    if (user.email_verified_at) return { message: '邮箱已验证 / the address is already verified' }
    needMail()
    const result = await issueCode(db, user.email, { id: user.id, purpose: 'email_verification' })
    if (!result.sent) {
      reply.header('retry-after', String(result.retryAfterSeconds))
      throw new ProblemError('rate_limited', `At most 5 code mails per address per hour; retry in ${result.retryAfterSeconds} s.`)
    }
    try {
      await mailer.send(codeMail(user.email, 'email_verification', result.code!))
    } catch (err) {
      request.log.error({ err, user_id: user.id }, 'verification mail failed')
      throw new ProblemError('service_unavailable', 'The mail could not be sent; try again later.')
    }
    return { message: '验证码已发送 / a code has been sent' }
  })

  app.post('/api/auth/email/verify', {
    schema: { tags: ['auth'], summary: 'Verify the caller\'s email address with the mailed code', security: [{ bearer: [] }], body: EmailVerifyBodySchema, response: { 200: MessageResponseSchema, ...problems(400, 401) } },
    onRequest: app.authenticate
  }, async (request) => {
    const user = await findUserById(db, request.user.id)
    if (!user) throw unauthorized('The account behind this token no longer exists.')
    if (user.email_verified_at) return { message: '邮箱已验证 / the address is already verified' }
    const ok = await db.transaction().execute(async (trx) => {
      if (!(await consumeCode(trx, user.id, 'email_verification', request.body.code))) return false
      await markEmailVerified(trx, user.id, config.SIGNUP_BONUS_ON, { eventsNamespace: config.EVENTS_NAMESPACE, requestId: request.id })
      return true
    })
    if (!ok) throw codeInvalid()
    request.log.info({ user_id: user.id }, 'email verified')
    return { message: '邮箱已验证 / the address is verified' }
  })

  if (mailer.devMailbox) {
    const box = mailer.devMailbox
    app.get(InternalEndpoints.devMailbox.url, { schema: internalRouteSchema(InternalEndpoints.devMailbox) }, async (request) => {
      const { to } = request.query
      return box.list(to === undefined ? undefined : normalizeEmail(to))
    })
  }
}
