// /api/auth sessions: refresh (rotation, reuse detection), logout, logout-all.
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { LogoutBodySchema, MessageResponseSchema, RefreshBodySchema, TokenResponseSchema } from '@chat-platform/contracts'
import type { AuthConfig } from '../config.ts'
import type { Database } from '../db/database.ts'
import { issueAccessToken } from '../access-token.ts'
import { endAllSessions, endSession, rotateRefreshToken, type SessionContext } from '../sessions.ts'
import { problems } from './schemas.ts'

export interface SessionRoutesOptions { db: Kysely<Database>, config: AuthConfig }

export async function sessionRoutes (fastify: FastifyInstance, opts: SessionRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, config } = opts
  const lifetimes = { ttlSeconds: config.JWT_TTL, adminTtlSeconds: config.ADMIN_JWT_TTL }
  const context = (requestId: string): SessionContext => ({ db, eventsNamespace: config.EVENTS_NAMESPACE, accessTtlSeconds: config.JWT_TTL, requestId })

  app.post('/api/auth/refresh', {
    schema: {
      tags: ['auth'],
      summary: 'Trade a refresh token for a new access token and a new refresh token (rotation)',
      body: RefreshBodySchema,
      response: { 200: TokenResponseSchema, ...problems(400, 401) }
    }
  }, async (request) => {
    const { user, sid, refreshToken } = await rotateRefreshToken(context(request.id), request.body.refresh_token)
    return { ...issueAccessToken(app, user, lifetimes, sid), refresh_token: refreshToken }
  })

  app.post('/api/auth/logout', {
    schema: {
      tags: ['auth'],
      summary: 'End this session (its access token and refresh token)',
      security: [{ bearer: [] }],
      body: LogoutBodySchema,
      response: { 200: MessageResponseSchema, ...problems(400, 401) }
    },
    onRequest: app.authenticate,
    // The body is optional: none at all means {} (as an empty JSON body does).
    preValidation: async (request) => { request.body ??= {} }
  }, async (request) => {
    await endSession(context(request.id), request.user, request.body.refresh_token)
    request.log.info({ user_id: request.user.id, sid: request.user.sid }, 'logged out')
    return { message: '已退出登录' }
  })

  app.post('/api/auth/logout-all', {
    schema: {
      tags: ['auth'],
      summary: 'End every session of the caller',
      security: [{ bearer: [] }],
      response: { 200: MessageResponseSchema, ...problems(401) }
    },
    onRequest: app.authenticate
  }, async (request) => {
    const ctx = context(request.id)
    await db.transaction().execute(async (trx) => {
      await endAllSessions(trx, ctx, request.user.id, 'logout_all', { jti: request.user.jti, exp: request.user.exp })
    })
    request.log.info({ user_id: request.user.id }, 'logged out everywhere')
    return { message: '已在所有设备退出登录' }
  })
}
