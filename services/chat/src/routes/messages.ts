// /api/sessions/:session_id/messages: send a message (JSON or SSE, idempotent with Idempotency-Key) and list them.
import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { balanceCacheKey, ChatMessageSchema, ErrorCodes, PaginationQuerySchema, ProblemSchema, SendMessageBodySchema, SessionIdParamsSchema, type ChatMessage } from '@chat-platform/contracts'
import { classify, notFound, problem, problemBody, ProblemError } from '@chat-platform/platform'
import type { ChatConfig } from '../config.ts'
import type { ChatDeps } from '../deps.ts'
import { findSession } from '../db/repositories/sessions.ts'
import { listMessages, toMessage } from '../db/repositories/messages.ts'
import { claimIdempotencyKey, deleteExpiredIdempotencyKeys, releaseIdempotencyKey, touchIdempotencyKey } from '../db/repositories/idempotency-keys.ts'
import { admissionBalance, readBalanceCopy, type OwnCharges } from '../balance.ts'
import { findSessionWithContext, readCharges, type ContextMessage } from '../db/repositories/exchanges.ts'
import { InflightLimiter, type InflightSlot } from '../inflight.ts'
import { runExchange, type ExchangeContext } from '../exchange.ts'
import { acceptsEventStream, openSse, type SseStream } from '../sse.ts'
import { RecordRetries, sweepStaleExchanges } from '../pending-exchanges.ts'

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
  const retries = new RecordRetries({ retryMs: config.CHAT_RECORD_RETRY_MS, metrics: deps.metrics })
  const tooMany = () => problem('rate_limited', `At most ${config.CHAT_MAX_INFLIGHT} messages can be in progress at once; wait for a reply.`, { headers: { 'retry-after': '1' } })
  const usedUp = () => problem('insufficient_balance', 'Your token balance is used up; recharge to keep chatting.')
  app.addHook('onRequest', app.authenticate)

  let sweeper: NodeJS.Timeout | undefined
  let pendingSweeper: NodeJS.Timeout | undefined
  let sweeping: Promise<unknown> = Promise.resolve()
  app.addHook('onReady', async () => {
    const sweep = () => deleteExpiredIdempotencyKeys(db, config.CHAT_IDEMPOTENCY_TTL_HOURS).catch((err) => app.log.warn({ err: err.message }, 'idempotency key sweep failed'))
    sweeper = setInterval(sweep, 3600_000)
    sweeper.unref()
    const sweepOpts = { staleMs: config.CHAT_PENDING_STALE_MS, prices: config.MODEL_PRICES, defaultModel: config.CHAT_MODEL, eventsNamespace: config.EVENTS_NAMESPACE, log: app.log, metrics: deps.metrics, simulated: deps.llm.simulated }
    const sweepPending = () => {
      sweeping = sweepStaleExchanges(db, sweepOpts).catch((err) => app.log.warn({ err: err.message }, 'pending exchange sweep failed'))
    }
    sweepPending()
    pendingSweeper = setInterval(sweepPending, config.CHAT_PENDING_SWEEP_MS)
    pendingSweeper.unref()
  })
  app.addHook('onClose', async () => {
    clearInterval(sweeper)
    clearInterval(pendingSweeper)
    await sweeping
    await retries.close()
  })

  /**
   * The in-flight slot with billing's copy of the balance (one Redis script), then chat's own charges. The
   * charges are read after the slot is held: an exchange they do not count either still holds a slot or
   * committed after this read began, so at most CHAT_MAX_INFLIGHT exchanges are admitted past zero.
   */
  const acquire = async (userId: number): Promise<{ slot: InflightSlot | null, cached?: string | null, charges?: OwnCharges }> => {
    const { slot, value } = await limiter.acquireAndRead(userId, balanceCacheKey(userId))
    if (!slot) return { slot, cached: value }
    try {
      return { slot, cached: value, charges: await readCharges(db, userId) }
    } catch (err) {
      await slot.release()
      throw err
    }
  }
  /** 402 when the balance admission counts is used up, 429 when no slot was free; else the slot. */
  const admit = async (userId: number, got: Awaited<ReturnType<typeof acquire>>, balanceCtx: Parameters<typeof readBalanceCopy>[0]): Promise<InflightSlot> => {
    const copy = await readBalanceCopy(balanceCtx, userId, got.cached)
    if (!got.slot || !got.charges) {
      if (copy.balance <= 0) throw usedUp()
      throw tooMany()
    }
    if (admissionBalance(copy, got.charges, config.MODEL_PRICES, config.CHAT_MODEL) <= 0) throw usedUp()
    return got.slot
  }

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
    const hash = key ? requestHash(sessionId, content) : undefined
    const balanceCtx = { redis: deps.redis, billingUrl: config.BILLING_URL, log: request.log, requestId: String(request.id) }
    // Without a key the checks before the LLM call run side by side: the session with its recent turns (one
    // query), and the in-flight slot with the balance copy (one Redis script) followed by chat's own charges
    // (one query). A slot taken for a request refused afterwards is given back at once.
    const found = findSessionWithContext(db, sessionId, userId, config.CHAT_HISTORY_MAX_MESSAGES)
    const taken = key ? undefined : acquire(userId)
    let slot: InflightSlot | null = null
    let history: ContextMessage[]
    try {
      const [session, acquired] = await Promise.all([found, taken])
      slot = acquired?.slot ?? null
      if (!session) throw notFound('session')
      history = session.history
      if (key) {
        const claim = await claimIdempotencyKey(db, { user_id: userId, key, request_hash: hash!, ttlHours: config.CHAT_IDEMPOTENCY_TTL_HOURS, staleMs: config.CHAT_INFLIGHT_TTL_MS })
        if (claim.kind === 'mismatch') throw problem('idempotency_conflict', 'This Idempotency-Key was already used with a different request.')
        if (claim.kind === 'gone') throw notFound('session')
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
          const got = await acquire(userId)
          slot = got.slot
          slot = await admit(userId, got, balanceCtx)
        } catch (err) {
          await releaseIdempotencyKey(db, userId, key)
          throw err
        }
      } else {
        slot = await admit(userId, acquired!, balanceCtx)
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
      requestId: String(request.id),
      prices: config.MODEL_PRICES,
      leaseMs: config.CHAT_INFLIGHT_TTL_MS,
      retries
    }
    const base = { userId, sessionId, content, idempotencyKey: key, requestHash: hash, history }
    // A reply generated but not yet recorded keeps its slot (renewed) until the charge lands: admission must
    // count it. If recording gives up, the slot is left to expire, by when the exchange's lease has too (and
    // admission counts it as stale pending).
    let settling: Promise<boolean> | undefined
    try {
      if (!streaming) {
        // A JSON caller that hangs up does not stop the exchange: the reply is stored and listed later.
        const result = await runExchange(ctx, base)
        settling = result.settling
        if (result.error) throw result.error
        if (!result.message) throw notFound('session')
        return result.message
      }
      const sse = openSse(reply, config.CHAT_SSE_HEARTBEAT_MS)
      const ac = new AbortController()
      sse.onClose(() => ac.abort())
      try {
        const result = await runExchange(ctx, { ...base, stream: { onDelta: (text) => sse.send('delta', { content: text }), signal: ac.signal } })
        settling = result.settling
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
      if (!settling) {
        clearInterval(renewer)
        await held.release()
      } else {
        settling.then(async (landed) => {
          clearInterval(renewer)
          if (landed) await held.release()
          else setTimeout(() => { held.release().catch(() => {}) }, config.CHAT_INFLIGHT_TTL_MS).unref()
        }).catch(() => {})
      }
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
