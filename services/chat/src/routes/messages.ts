// /api/sessions/:session_id/messages: send a message (JSON or SSE, idempotent with Idempotency-Key) and list them.
import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ChatMessageSchema, ErrorCodes, PaginationQuerySchema, ProblemSchema, SendMessageBodySchema, SessionIdParamsSchema, type ChatMessage } from '@chat-platform/contracts'
import { classify, notFound, problem, problemBody, ProblemError } from '@chat-platform/platform'
import type { ChatConfig } from '../config.ts'
import type { ChatDeps } from '../deps.ts'
import { findSession } from '../db/repositories/sessions.ts'
import { listMessages, toMessage } from '../db/repositories/messages.ts'
import { claimIdempotencyKey, deleteExpiredIdempotencyKeys, releaseIdempotencyKey, touchIdempotencyKey } from '../db/repositories/idempotency-keys.ts'
import { balanceKey, readBalance } from '../balance.ts'
import { findSessionWithContext, type ContextMessage } from '../db/repositories/exchanges.ts'
import { InflightLimiter, type InflightSlot } from '../inflight.ts'
import { runExchange, type ExchangeContext } from '../exchange.ts'
import { acceptsEventStream, openSse, type SseStream } from '../sse.ts'

const SendHeadersSchema = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7E]+$' })),
  accept: Type.Optional(Type.String())
}, { additionalProperties: true })

const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ProblemSchema]))

const requestHash = (sessionId: number, content: string) => createHash('sha256').update(JSON.stringify([sessionId, content])).digest('hex')

export async function messageRoutes (fastify: FastifyInstance, opts: { deps: ChatDeps, config: ChatConfig }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { deps, config } = opts
  const { db } = deps
  const limiter = new InflightLimiter(deps.redis, { max: config.CHAT_MAX_INFLIGHT, ttlMs: config.CHAT_INFLIGHT_TTL_MS, log: app.log })
  const security = [{ bearer: [] }]
  const tooMany = () => problem('rate_limited', `At most ${config.CHAT_MAX_INFLIGHT} messages can be in progress at once; wait for a reply.`, { headers: { 'retry-after': '1' } })
  app.addHook('onRequest', app.authenticate)

  let sweeper: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    const sweep = () => deleteExpiredIdempotencyKeys(db, config.CHAT_IDEMPOTENCY_TTL_HOURS).catch((err) => app.log.warn({ err: err.message }, 'idempotency key sweep failed'))
    sweeper = setInterval(sweep, 3600_000)
    sweeper.unref()
  })
  app.addHook('onClose', async () => { clearInterval(sweeper) })

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
      description: 'With `Accept: text/event-stream` the reply streams as Server-Sent Events: `delta` {content} chunks, then `done` with the message object, or `error` with a problem object. `Idempotency-Key` makes retries safe.',
      security,
      params: SessionIdParamsSchema,
      headers: SendHeadersSchema,
      body: SendMessageBodySchema,
      response: { 200: ChatMessageSchema, ...problems(400, 401, 402, 404, 409, 429, 502, 503, 504) }
    }
  }, async (request, reply) => {
    const userId = request.user.id
    const sessionId = request.params.session_id
    const { content } = request.body
    const streaming = acceptsEventStream(request.headers.accept)
    const key = request.headers['idempotency-key']
    const balanceCtx = { redis: deps.redis, billingUrl: config.BILLING_URL, log: request.log, requestId: String(request.id) }
    // Without a key the checks before the LLM call run side by side: the session with its recent turns (one
    // query), and the in-flight slot with the balance copy (one Redis script). A slot taken for a request
    // refused afterwards is given back at once.
    const found = findSessionWithContext(db, sessionId, userId, config.CHAT_HISTORY_MAX_MESSAGES)
    const taken = key ? undefined : limiter.acquireAndRead(userId, balanceKey(userId))
    let slot: InflightSlot | null = null
    let history: ContextMessage[]
    try {
      const [session, acquired] = await Promise.all([found, taken])
      slot = acquired?.slot ?? null
      if (!session) throw notFound('session')
      history = session.history
      if (key) {
        const claim = await claimIdempotencyKey(db, { user_id: userId, key, request_hash: requestHash(sessionId, content), ttlHours: config.CHAT_IDEMPOTENCY_TTL_HOURS, staleMs: config.CHAT_INFLIGHT_TTL_MS })
        if (claim.kind === 'mismatch') throw problem('idempotency_conflict', 'This Idempotency-Key was already used with a different request.')
        if (claim.kind === 'in_progress') throw problem('idempotency_conflict', 'A request with this Idempotency-Key is still in progress; retry when it has finished.', { headers: { 'retry-after': '1' } })
        if (claim.kind === 'replay') {
          request.log.info('idempotent replay')
          const message = claim.response as ChatMessage
          if (!streaming) return message
          const sse = openSse(reply, config.CHAT_SSE_HEARTBEAT_MS)
          sse.send('delta', { content: message.content })
          sse.send('done', message)
          sse.end()
          return reply
        }
        try {
          const balance = await readBalance(balanceCtx, userId)
          if (balance <= 0) throw problem('insufficient_balance', 'Your token balance is used up; recharge to keep chatting.')
          slot = await limiter.acquire(userId)
          if (!slot) throw tooMany()
        } catch (err) {
          await releaseIdempotencyKey(db, userId, key)
          throw err
        }
      } else {
        const balance = await readBalance(balanceCtx, userId, acquired!.value)
        if (balance <= 0) throw problem('insufficient_balance', 'Your token balance is used up; recharge to keep chatting.')
        if (!slot) throw tooMany()
      }
    } catch (err) {
      // Both ran: wait for the other one too, and give back a slot however far the checks got.
      const [, got] = await Promise.allSettled([found, taken])
      const held = slot ?? (got.status === 'fulfilled' ? got.value?.slot : null)
      if (held) await held.release()
      throw err
    }

    const held = slot
    const renewer = setInterval(() => {
      held.renew().catch(() => {})
      if (key) touchIdempotencyKey(db, userId, key).catch(() => {})
    }, Math.max(1000, Math.floor(config.CHAT_INFLIGHT_TTL_MS / 3)))
    renewer.unref()
    const ctx: ExchangeContext = {
      db,
      llm: deps.llm,
      tokenizer: deps.tokenizer,
      log: request.log,
      systemPrompt: config.CHAT_SYSTEM_PROMPT,
      contextTokens: config.CHAT_CONTEXT_TOKENS,
      eventsNamespace: config.EVENTS_NAMESPACE,
      requestId: String(request.id)
    }
    const base = { userId, sessionId, content, idempotencyKey: key, history }
    try {
      if (!streaming) {
        // A JSON caller that hangs up does not stop the exchange: the reply is stored and listed later.
        const result = await runExchange(ctx, base)
        if (result.error) throw result.error
        if (!result.message) throw notFound('session')
        return result.message
      }
      const sse = openSse(reply, config.CHAT_SSE_HEARTBEAT_MS)
      const ac = new AbortController()
      sse.onClose(() => ac.abort())
      try {
        const result = await runExchange(ctx, { ...base, stream: { onDelta: (text) => sse.send('delta', { content: text }), signal: ac.signal } })
        if (result.error) sendError(sse, request, result.error)
        else if (result.message) sse.send('done', result.message)
        else if (result.sessionGone) sendError(sse, request, notFound('session'))
      } catch (err) {
        sendError(sse, request, err)
      } finally {
        sse.end()
      }
      return reply
    } finally {
      clearInterval(renewer)
      await held.release()
    }
  })
}

function sendError (sse: SseStream, request: { id: unknown, log: { error: (o: object, m: string) => void, info: (o: object, m: string) => void } }, err: unknown) {
  const c = err instanceof ProblemError ? { code: err.code, detail: err.message } : classify(err as never)
  const body = problemBody(c.code, c.detail, String(request.id))
  if (ErrorCodes[c.code].status >= 500) request.log.error({ err }, 'exchange failed')
  else request.log.info({ code: c.code }, 'exchange rejected')
  sse.send('error', body)
}
