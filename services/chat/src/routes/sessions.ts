// /api/sessions: create, list, change (title, model, system prompt) and delete the caller's chat sessions.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { CreateSessionWithSettingsBodySchema, MessageResponseSchema, PaginationQuerySchema, ProblemSchema, SessionIdParamsSchema, SessionWithSettingsSchema, UpdateSessionBodySchema } from '@chat-platform/contracts'
import { notFound, validationFailed } from '@chat-platform/platform'
import type { ChatDeps } from '../deps.ts'
import { deleteSession, insertSession, listSessions, toSession, updateSession } from '../db/repositories/sessions.ts'

export const DEFAULT_TITLE = '新会话'

const checkTitle = (raw: string) => {
  const title = raw.trim()
  if (title.length < 1 || title.length > 100) throw validationFailed('/body/title', 'must be 1 to 100 characters after trimming')
  return title
}

export async function sessionRoutes (fastify: FastifyInstance, opts: { deps: ChatDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, models } = opts.deps
  // A model must be one of GET /api/models (null: the default); stored as given.
  const checkModel = (model: string | null | undefined) => {
    if (model !== undefined && model !== null && !models.has(model)) throw validationFailed('/body/model', 'must be the id of a model of GET /api/models')
    return model
  }
  app.addHook('onRequest', app.authenticate)
  const security = [{ bearer: [] }]

  app.post('/api/sessions', {
    schema: {
      tags: ['chat'],
      summary: 'Create a chat session',
      security,
      body: CreateSessionWithSettingsBodySchema,
      response: { 200: SessionWithSettingsSchema, 400: ProblemSchema, 401: ProblemSchema }
    },
    // A POST without a body is a session with the default title.
    preValidation: async (request) => { if (request.body === undefined || request.body === null) request.body = {} }
  }, async (request) => {
    const { title, model, system_prompt: systemPrompt } = request.body
    return toSession(await insertSession(db, {
      user_id: request.user.id,
      title: title === undefined ? DEFAULT_TITLE : checkTitle(title),
      model: checkModel(model) ?? null,
      system_prompt: systemPrompt ?? null
    }))
  })

  app.patch('/api/sessions/:session_id', {
    schema: {
      tags: ['chat'],
      summary: 'Change a session\'s title, model or system prompt',
      description: 'Fields left out stay as they are; `model` or `system_prompt` null goes back to the default. `system_prompt` "" sends no system prompt.',
      security,
      params: SessionIdParamsSchema,
      body: UpdateSessionBodySchema,
      response: { 200: SessionWithSettingsSchema, 400: ProblemSchema, 401: ProblemSchema, 404: ProblemSchema }
    },
    preValidation: async (request) => { if (request.body === undefined || request.body === null) request.body = {} }
  }, async (request) => {
    const { title, model, system_prompt: systemPrompt } = request.body
    const row = await updateSession(db, request.params.session_id, request.user.id, {
      ...(title !== undefined ? { title: checkTitle(title) } : {}),
      ...(model !== undefined ? { model: checkModel(model) } : {}),
      ...(systemPrompt !== undefined ? { system_prompt: systemPrompt } : {})
    })
    if (!row) throw notFound('session')
    return toSession(row)
  })

  app.get('/api/sessions', {
    schema: {
      tags: ['chat'],
      summary: 'List the caller\'s sessions, newest first',
      security,
      querystring: PaginationQuerySchema,
      response: { 200: Type.Array(SessionWithSettingsSchema), 400: ProblemSchema, 401: ProblemSchema }
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
