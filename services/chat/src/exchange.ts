// One chat exchange: store the user's message (pending, leased) while the LLM is asked, then record the reply, its
// usage, the usage event and the user's charge in one statement (or, when nothing was generated, mark the message
// failed and charge nothing). A record that fails after output is retried until it lands, never dropped.
import type { Kysely } from 'kysely'
import { namespaced, Subjects, type ChatMessage, type ModelPrices, type UsageRecorded, type UsageSource } from '@chat-platform/contracts'
import { ProblemError } from '@chat-platform/platform'
import type { FastifyBaseLogger as Logger } from 'fastify'
import type { Database, MessageRow } from './db/database.ts'
import { updateMessage, toMessage } from './db/repositories/messages.ts'
import { insertUserMessage, recordReply, renewLease, type ContextMessage } from './db/repositories/exchanges.ts'
import { completeIdempotencyKey, releaseIdempotencyKey } from './db/repositories/idempotency-keys.ts'
import { buildPrompt } from './prompt.ts'
import type { LlmClient, LlmOutcome } from './llm/client.ts'
import type { Tokenizer } from './llm/tokenizer.ts'
import type { RecordRetries } from './pending-exchanges.ts'
import { buildUsageEvent } from './usage-event.ts'

export interface ExchangeContext {
  db: Kysely<Database>
  llm: LlmClient
  tokenizer: Tokenizer
  log: Logger
  systemPrompt: string
  contextTokens: number
  eventsNamespace: string
  requestId?: string
  /** Chat's prices (the same MODEL_PRICES as billing's): each usage event carries its estimated_amount. */
  prices: ModelPrices
  /** The pending message's lease, renewed while the exchange runs (the in-flight slot's TTL). */
  leaseMs: number
  retries: RecordRetries
}

export interface ExchangeInput {
  userId: number
  sessionId: number
  content: string
  idempotencyKey?: string
  /** With idempotencyKey: the request it names (kept with the charged exchange for good). */
  requestHash?: string
  /** The session's earlier turns that may go into the prompt, newest first (read with the session). */
  history: ContextMessage[]
  /** Streaming: deltas as the model writes; `signal` aborts the upstream call (the client left). */
  stream?: { onDelta: (text: string) => void, signal: AbortSignal }
}

/**
 * `message` is the stored reply when anything was generated (and charged); `error` says why the exchange
 * ended early, if it did. Neither is set when the client left before the model wrote anything.
 */
export interface ExchangeResult {
  message?: ChatMessage
  error?: ProblemError
  sessionGone?: boolean
  /**
   * Set when the reply was generated but could not be recorded: the retry in the background, true once the
   * charge landed. The caller keeps the in-flight slot until then (admission must see the charge first).
   */
  settling?: Promise<boolean>
}

interface Usage { prompt_tokens: number, completion_tokens: number, usage_source: UsageSource }

/** Throws a ProblemError when the exchange failed with nothing generated (nothing is charged then). */
export async function runExchange (ctx: ExchangeContext, input: ExchangeInput): Promise<ExchangeResult> {
  const { db, log } = ctx
  const prompt = buildPrompt({ systemPrompt: ctx.systemPrompt, historyNewestFirst: input.history, content: input.content, budget: ctx.contextTokens, tokenizer: ctx.tokenizer })
  log.debug({ history_used: prompt.historyUsed, prompt_tokens: prompt.tokens }, 'prompt built')
  // The user's message is stored while the model is already asked, so its commit is not on the first byte's
  // path; if it cannot be stored, the call is stopped and nothing is charged.
  // The call is started first (its request leaves before the insert's), then the insert.
  const notStored = new AbortController()
  const call = input.stream
    ? ctx.llm.stream(prompt.messages, input.stream.onDelta, AbortSignal.any([input.stream.signal, notStored.signal]))
    : ctx.llm.complete(prompt.messages, notStored.signal)
  const stored = insertUserMessage(db, {
    session_id: input.sessionId,
    user_id: input.userId,
    role: 'user',
    content: input.content,
    content_tokens: prompt.contentTokens,
    status: 'pending',
    error_code: null,
    exchange_model: ctx.llm.model,
    exchange_prompt_tokens: prompt.tokens,
    lease_ms: ctx.leaseMs
  })
  stored.catch(() => notStored.abort())
  // The lease tells the sweeper this exchange's process is alive, however long the model takes.
  const lease = setInterval(() => {
    stored.then((m) => renewLease(db, m.id, ctx.leaseMs)).catch(() => {})
  }, Math.max(1000, Math.floor(ctx.leaseMs / 3)))
  lease.unref()
  try {
    return await finishExchange(ctx, input, prompt, call, stored)
  } finally {
    clearInterval(lease)
  }
}

async function finishExchange (ctx: ExchangeContext, input: ExchangeInput, prompt: { tokens: number }, call: Promise<LlmOutcome>, stored: Promise<MessageRow & { reply_id: number }>): Promise<ExchangeResult> {
  const { db, log } = ctx
  let outcome: LlmOutcome | undefined
  let callError: unknown
  try {
    outcome = await call
  } catch (err) {
    callError = err
  }
  let userMessage: MessageRow & { reply_id: number }
  try {
    userMessage = await stored
  } catch (err) {
    log.error({ err: (err as Error).message }, 'the user message could not be stored; the model call was stopped, nothing is charged')
    if (input.idempotencyKey) await releaseIdempotencyKey(db, input.userId, input.idempotencyKey).catch(() => {})
    throw err
  }
  if (!outcome) {
    await failExchange(ctx, input, userMessage, 'internal_error')
    throw callError
  }

  if (!outcome.finished && outcome.content === '') {
    const code = outcome.error?.code ?? 'client_closed'
    log.warn({ code, cause: (outcome.error?.cause as Error | undefined)?.message }, 'exchange failed with no output; nothing charged')
    await failExchange(ctx, input, userMessage, code)
    if (outcome.error) throw outcome.error
    return {}
  }

  const usage: Usage = outcome.usage
    ? { ...outcome.usage, usage_source: 'provider' }
    : { prompt_tokens: prompt.tokens, completion_tokens: ctx.tokenizer.count(outcome.content), usage_source: 'estimated' }
  const event = usageEvent(ctx, input, userMessage, usage)
  try {
    const recorded = await recordExchange(ctx, input, userMessage, outcome, event)
    if (outcome.error || outcome.clientAborted) log.warn({ code: outcome.error?.code ?? 'client_closed', completion_tokens: usage.completion_tokens, usage_source: usage.usage_source }, 'partial reply stored and charged')
    return { ...recorded, error: outcome.error }
  } catch (err) {
    // The model answered (the client may have the text) but the record could not be written: keep trying until
    // it lands. The reserved reply id makes a second write of the same exchange a no-op, so a COMMIT whose
    // answer was lost is not charged twice; if this process dies first, the sweeper settles the exchange.
    log.error({ err, user_id: input.userId, session_id: input.sessionId, ...usage }, 'LLM usage could not be recorded; retrying in the background')
    const answered = outcome
    const settling = ctx.retries.retry('record reply', async () => { await recordExchange(ctx, input, userMessage, answered, event) }, log)
    return { error: new ProblemError('service_unavailable', 'The reply could not be saved yet; it will appear in the session, and be charged, once storage is back.', { cause: err }), settling }
  }
}

/** Marks a pending exchange failed (nothing charged); while Postgres is away, retried in the background. */
async function failExchange (ctx: ExchangeContext, input: ExchangeInput, userMessage: MessageRow, code: string): Promise<void> {
  const write = async () => {
    await updateMessage(ctx.db, userMessage.id, { status: 'failed', error_code: code, lease_until: null })
    if (input.idempotencyKey) await releaseIdempotencyKey(ctx.db, input.userId, input.idempotencyKey)
  }
  try {
    await write()
  } catch (err) {
    ctx.log.error({ err }, 'could not mark the failed exchange; retrying in the background')
    ctx.retries.retry('mark failed', write, ctx.log).catch(() => {})
  }
}

function usageEvent (ctx: ExchangeContext, input: ExchangeInput, userMessage: MessageRow & { reply_id: number }, usage: Usage): UsageRecorded {
  // The reply's id was reserved with the user message; if the session was deleted meanwhile it names no stored message.
  return buildUsageEvent({ user_id: input.userId, session_id: input.sessionId, message_id: userMessage.reply_id, model: ctx.llm.model, ...usage, simulated: ctx.llm.simulated }, ctx.prices)
}

async function recordExchange (ctx: ExchangeContext, input: ExchangeInput, userMessage: MessageRow & { reply_id: number }, outcome: LlmOutcome, event: UsageRecorded): Promise<{ message?: ChatMessage, sessionGone?: boolean }> {
  const record = {
    userMessageId: userMessage.id,
    promptTokens: event.prompt_tokens,
    reply: {
      id: userMessage.reply_id,
      session_id: input.sessionId,
      user_id: input.userId,
      content: outcome.content,
      tokens: event.completion_tokens,
      content_tokens: event.usage_source === 'estimated' ? event.completion_tokens : ctx.tokenizer.count(outcome.content),
      status: outcome.finished ? 'ok' as const : 'partial' as const,
      error_code: outcome.finished ? null : outcome.error?.code ?? 'client_closed'
    },
    event,
    subject: namespaced(ctx.eventsNamespace).subject(Subjects.usageRecorded),
    requestId: ctx.requestId,
    idempotency: input.idempotencyKey && input.requestHash ? { key: input.idempotencyKey, request_hash: input.requestHash } : undefined
  }
  const key = input.idempotencyKey
  if (!key) {
    const { reply } = await recordReply(ctx.db, record)
    return reply ? { message: toMessage(reply) } : { sessionGone: true }
  }
  // With an Idempotency-Key its answer is stored in the same transaction, so a retry can never be charged twice.
  return await ctx.db.transaction().execute(async (trx) => {
    const { reply } = await recordReply(trx, record)
    const message = reply ? toMessage(reply) : undefined
    if (message) await completeIdempotencyKey(trx, input.userId, key, message)
    else await releaseIdempotencyKey(trx, input.userId, key)
    return message ? { message } : { sessionGone: true }
  })
}
