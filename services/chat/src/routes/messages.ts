// /api/sessions/:session_id/messages: send a message (JSON or SSE, idempotent with Idempotency-Key), list them, regenerate the last reply.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ChatMessageSchema, ErrorCodes, IdempotencyKey, PaginationQuerySchema, SendMessageWithModelBodySchema, SessionIdParamsSchema, type ChatMessage } from '@chat-platform/contracts'
import { classify, notFound, problemBody, ProblemError, problems, validationFailed } from '@chat-platform/platform'
import type { ChatConfig } from '../config.ts'
import type { ChatDeps } from '../deps.ts'
import { findSession } from '../db/repositories/sessions.ts'
import { listMessages, toMessage } from '../db/repositories/messages.ts'
import { ClientClosedError, SendMessage, type Admission } from '../send-message.ts'
import { acceptsEventStream, openSse, type SseStream } from '../sse.ts'

const SendHeadersSchema = Type.Object({
  'idempotency-key': Type.Optional(IdempotencyKey),
  accept: Type.Optional(Type.String())
}, { additionalProperties: true })

const RegenerateParamsSchema = Type.Object({ ...SessionIdParamsSchema.properties, message_id: SessionIdParamsSchema.properties.session_id })

export async function messageRoutes (fastify: FastifyInstance, opts: { deps: ChatDeps, config: ChatConfig }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { deps, config } = opts
  const { db } = deps
  const security = [{ bearer: [] }]
  const sendMessage = new SendMessage(deps, config, app.log)
  app.addHook('onRequest', app.authenticate)
  app.addHook('onReady', async () => { sendMessage.start(app.log) })
  app.addHook('onClose', async () => { await sendMessage.close() })

  app.get('/api/sessions/:session_id/messages', {
    schema: {
      tags: ['chat'],
      summary: 'List a session\'s messages, oldest first (the newest `limit` before `before_id`)',
      security,
      params: SessionIdParamsSchema,
      querystring: PaginationQuerySchema,
      response: { 200: Type.Array(ChatMessageSchema), ...problems(400, 401, 404) }
    }
  }, async (request) => {
    const session = await findSession(db, request.params.session_id, request.user.id)
    if (!session) throw notFound('session')
    const rows = await listMessages(db, session.id, { limit: request.query.limit, beforeId: request.query.before_id })
    return rows.map(toMessage)
  })

  app.post('/api/sessions/:session_id/messages', {
    schema: {
      tags: ['chat'],
      summary: 'Send a message and get the assistant\'s reply',
      description: 'With `Accept: text/event-stream` the reply streams as Server-Sent Events: `delta` {content} chunks, then `done` with the message object, or `error` with a problem object. `Idempotency-Key` makes retries safe. 400 `validation_failed` when the system prompt and the message alone exceed the model\'s prompt budget (its `context_tokens` less the reply\'s maximum): nothing is stored or charged.',
      security,
      params: SessionIdParamsSchema,
      headers: SendHeadersSchema,
      body: SendMessageWithModelBodySchema,
      response: { 200: ChatMessageSchema, ...problems(400, 401, 402, 404, 409, 429, 502, 503, 504) }
    }
  }, async (request, reply) => {
    const { model } = request.body
    if (model !== undefined && !deps.models.has(model)) throw validationFailed('/body/model', 'must be the id of a model of GET /api/models')
    const admitted = await sendMessage.admit({
      model,
      userId: request.user.id,
      sessionId: request.params.session_id,
      content: request.body.content,
      idempotencyKey: request.headers['idempotency-key'],
      log: request.log,
      requestId: String(request.id)
    })
    return await answer(request, reply, admitted)
  })

  app.post('/api/sessions/:session_id/messages/:message_id/regenerate', {
    schema: {
      tags: ['chat'],
      summary: 'Regenerate the session\'s last reply',
      description: 'Asks the model again for the last user message; the new reply replaces `message_id` (which must be the session\'s last reply, else 409 `not_last_reply`) in the conversation, and the old one stays listed with `superseded: true`. Charged as an exchange; admission (400 when the system prompt and the message no longer fit the model\'s prompt budget, 402, 429), `Idempotency-Key` and `Accept: text/event-stream` as when sending. No body.',
      security,
      params: RegenerateParamsSchema,
      headers: SendHeadersSchema,
      response: { 200: ChatMessageSchema, ...problems(400, 401, 402, 404, 409, 429, 502, 503, 504) }
    }
  }, async (request, reply) => {
    const admitted = await sendMessage.admitRegenerate({
      userId: request.user.id,
      sessionId: request.params.session_id,
      messageId: request.params.message_id,
      idempotencyKey: request.headers['idempotency-key'],
      log: request.log,
      requestId: String(request.id)
    })
    return await answer(request, reply, admitted)
  })

  /** The admitted exchange's answer: JSON, or SSE (`delta`… then `done` or `error`) with Accept: text/event-stream. */
  async function answer (request: FastifyRequest, reply: FastifyReply, admitted: Admission) {
    const streaming = acceptsEventStream(request.headers.accept)
    // A JSON caller that hangs up does not stop the exchange: the reply is stored and listed later.
    if (!streaming) return admitted.replay ?? await admitted.exchange()
    const sse = openSse(reply, config.CHAT_SSE_HEARTBEAT_MS)
    try {
      if (admitted.replay) {
        sse.send('delta', { content: admitted.replay.content })
        sse.send('done', admitted.replay)
        return reply
      }
      // Only a streaming client that leaves aborts the model (it asked to watch it write).
      const ac = new AbortController()
      sse.onClose(() => ac.abort())
      const message: ChatMessage = await admitted.exchange({ onDelta: (text) => sse.send('delta', { content: text }), signal: ac.signal })
      sse.send('done', message)
    } catch (err) {
      if (!(err instanceof ClientClosedError)) sendError(sse, request, err)
    } finally {
      sse.end()
    }
    return reply
  }
}

function sendError (sse: SseStream, request: FastifyRequest, err: unknown) {
  const c = err instanceof ProblemError ? { code: err.code, detail: err.message } : classify(err as never)
  const body = problemBody(c.code, c.detail, String(request.id))
  if (ErrorCodes[c.code].status >= 500) request.log.error({ err }, 'exchange failed')
  else request.log.info({ code: c.code }, 'exchange rejected')
  sse.send('error', body)
}
