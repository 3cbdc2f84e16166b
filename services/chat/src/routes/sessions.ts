// /api/sessions: create, list and delete the caller's chat sessions.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { CreateSessionBodySchema, MessageResponseSchema, PaginationQuerySchema, ProblemSchema, SessionIdParamsSchema, SessionSchema } from '@chat-platform/contracts'
import { notFound, validationFailed } from '@chat-platform/platform'
import type { ChatDeps } from '../deps.ts'
import { deleteSession, insertSession, listSessions, toSession } from '../db/repositories/sessions.ts'

export const DEFAULT_TITLE = '新会话'

export async function sessionRoutes (fastify: FastifyInstance, opts: { deps: ChatDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = opts.deps
  app.addHook('onRequest', app.authenticate)
  const security = [{ bearer: [] }]

  app.post('/api/sessions', {
    schema: {
      tags: ['chat'],
      summary: 'Create a chat session',
      security,
      body: CreateSessionBodySchema,
      response: { 200: SessionSchema, 400: ProblemSchema, 401: ProblemSchema }
    },
    // A POST without a body is a session with the default title.
    preValidation: async (request) => { if (request.body === undefined || request.body === null) request.body = {} }
  }, async (request) => {
    const raw = request.body?.title
    const title = raw === undefined ? DEFAULT_TITLE : raw.trim()
    if (title.length < 1 || title.length > 100) throw validationFailed('/body/title', 'must be 1 to 100 characters after trimming')
    return toSession(await insertSession(db, { user_id: request.user.id, title }))
  })

  app.get('/api/sessions', {
    schema: {
      tags: ['chat'],
      summary: 'List the caller\'s sessions, newest first',
      security,
      querystring: PaginationQuerySchema,
      response: { 200: Type.Array(SessionSchema), 400: ProblemSchema, 401: ProblemSchema }
    }
  }, async (request) => {
    const rows = await listSessions(db, request.user.id, { limit: request.query.limit, beforeId: request.query.before_id })
    return rows.map(toSession)
  })

  app.delete('/api/sessions/:session_id', {
    schema: {
      tags: ['chat'],
      summary: 'Delete a session and its messages (billing history stays)',
      security,
      params: SessionIdParamsSchema,
      response: { 200: MessageResponseSchema, 400: ProblemSchema, 401: ProblemSchema, 404: ProblemSchema }
    }
  }, async (request) => {
    if (!await deleteSession(db, request.params.session_id, request.user.id)) throw notFound('session')
    return { message: '会话删除成功' }
  })
}
