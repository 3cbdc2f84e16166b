// /api/auth: register, email-login, wechat-login, verify.
import type { FastifyInstance } from 'fastify'
import type { Counter } from 'prom-client'
import type { Kysely } from 'kysely'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { EmailLoginBodySchema, RegisterBodySchema, RegisterResponseSchema, TokenResponseSchema, VerifyResponseSchema, WechatLoginBodySchema } from '@chat-platform/contracts'
import { ProblemError, unauthorized, validationFailed, type Redis } from '@chat-platform/platform'
import { normalizeEmail, wechatApps, type AuthConfig } from '../config.ts'
import type { Database } from '../db/database.ts'
import { findUserByEmail, findUserById, setUserPasswordHash } from '../db/repositories/users.ts'
import { registerWithEmail, findOrCreateWechatUser } from '../accounts.ts'
import { hashPassword, verifyPassword, needsRehash, passwordHashing } from '../passwords.ts'
import { issueTokenPair } from '../access-token.ts'
import { readTokens } from '../balances.ts'
import { code2Session } from '../wechat.ts'
import type { LoginThrottle } from '../login-throttle.ts'
import type { Mailer } from '../mail.ts'
import { sendVerificationInBackground } from './email.ts'
import { problems, trimFields } from './schemas.ts'

export interface AuthRoutesOptions {
  db: Kysely<Database>
  redis: Redis
  config: AuthConfig
  throttle: LoginThrottle
  /** Counts argon2 verifications (auth_password_verifications_total). */
  verifications: Counter
  mailer: Mailer
}

export async function authRoutes (fastify: FastifyInstance, opts: AuthRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, redis, config, throttle, verifications } = opts
  const lifetimes = { ttlSeconds: config.JWT_TTL, adminTtlSeconds: config.ADMIN_JWT_TTL }
  const countVerification = () => verifications.inc()
  const wechat = wechatApps(config)

  app.post('/api/auth/register', {
    schema: {
      tags: ['auth'],
      summary: 'Register with email, password and nickname',
      body: RegisterBodySchema,
      response: { 200: RegisterResponseSchema, ...problems(400, 409, 503) }
    },
    preValidation: trimFields('email', 'nickname')
  }, async (request) => {
    const { email, password, nickname } = request.body
    const passwordHash = await hashPassword(password)
    const user = await registerWithEmail(db, { email, passwordHash, nickname }, { eventsNamespace: config.EVENTS_NAMESPACE, requestId: request.id, publishRegistered: config.SIGNUP_BONUS_ON === 'register' })
    request.log.info({ user_id: user.id, via: 'email' }, 'user registered')
    // The address is verified with a code sent now (best effort: registration never waits for or fails on mail).
    sendVerificationInBackground(db, opts.mailer, { id: user.id, email }, request.log)
    return { message: '注册成功', user_id: user.id }
  })

  app.post('/api/auth/email-login', {
    schema: {
      tags: ['auth'],
      summary: 'Log in with email and password: an access token and a refresh token',
      body: EmailLoginBodySchema,
      response: { 200: TokenResponseSchema, ...problems(400, 401, 429, 503) }
    }
  }, async (request) => {
    const email = normalizeEmail(request.body.email)
    // A flood past the argon2 queue is refused before it costs a throttle round trip or a lookup (503).
    passwordHashing.ensureRoom()
    // Counted before anything is looked up or hashed: parallel guesses are throttled like sequential ones.
    await throttle.attempt(email, request.ip)
    let user: Awaited<ReturnType<typeof findUserByEmail>>
    let ok: boolean
    try {
      user = await findUserByEmail(db, email)
      // Always one argon2 verification (a dummy hash for an unknown email or a user without a password),
      // so the answer and its timing say nothing about whether the email is registered.
      ok = await verifyPassword(user?.password_hash, request.body.password, countVerification)
    } catch (err) {
      await throttle.undo(email, request.ip)
      throw err
    }
    if (!user || !ok) throw new ProblemError('invalid_credentials', 'The email or password is wrong.')
    await throttle.succeeded(email, request.ip)
    if (needsRehash(user.password_hash!)) {
      // Best effort: the password was right, so a full argon2 queue must not turn the login into a 503; the next login
      // upgrades the hash.
      try {
        await setUserPasswordHash(db, user.id, await hashPassword(request.body.password))
      } catch (err) {
        if (!(err instanceof ProblemError && err.shed)) throw err
        request.log.warn({ user_id: user.id }, 'password hash upgrade skipped: the argon2 queue is full')
      }
    }
    return await issueTokenPair(app, db, user, lifetimes)
  })

  app.post('/api/auth/wechat-login', {
    schema: {
      tags: ['auth'],
      summary: 'Log in with a WeChat code (mini-program jscode2session, or another app of the same Open Platform account)',
      body: WechatLoginBodySchema,
      response: { 200: TokenResponseSchema, ...problems(400, 401, 429, 502, 503) }
    }
  }, async (request) => {
    const appid = request.body.appid ?? wechat.defaultAppid
    if (appid === undefined) throw new ProblemError('service_unavailable', 'WeChat login is not configured on this server.')
    const wxApp = wechat.apps.get(appid)
    if (!wxApp) throw validationFailed('/appid', 'is not a WeChat app configured on this server')
    const session = await code2Session({ base: config.WECHAT_API_BASE, appid: wxApp.appid, secret: wxApp.secret, kind: wxApp.kind, timeoutMs: config.WECHAT_TIMEOUT_MS }, request.body.code)
    const { user, created } = await findOrCreateWechatUser(db, wxApp.appid, session, { eventsNamespace: config.EVENTS_NAMESPACE, requestId: request.id })
    if (created) request.log.info({ user_id: user.id, via: 'wechat' }, 'user registered')
    return await issueTokenPair(app, db, user, lifetimes)
  })

  app.get('/api/auth/verify', {
    schema: {
      tags: ['auth'],
      summary: 'The caller\'s identity and token balance',
      security: [{ bearer: [] }],
      response: { 200: VerifyResponseSchema, ...problems(401, 503) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const user = await findUserById(db, request.user.id)
    if (!user) throw unauthorized('The account behind this token no longer exists.')
    const tokens = await readTokens(redis, config.BILLING_URL, user.id, { requestId: request.id, log: request.log })
    return { user: { id: user.id, email: user.email, nickname: user.nickname, tokens } }
  })
}
