// One chat exchange: store the user's message, build the prompt, call the LLM, then record the reply, its usage
// and the usage event in one transaction (or, when nothing was generated, mark the message failed and charge nothing).
import { randomUUID } from 'node:crypto'
import type { Kysely } from 'kysely'
import { namespaced, Subjects, type ChatMessage, type UsageRecorded, type UsageSource } from '@chat-platform/contracts'
import { writeOutbox, type ProblemError } from '@chat-platform/platform'
import type { FastifyBaseLogger as Logger } from 'fastify'
import { SCHEMA, type Database, type MessageRow } from './db/database.ts'
import { insertMessage, updateMessage, listContextMessages, reserveMessageId, toMessage } from './db/repositories/messages.ts'
import { lockSession } from './db/repositories/sessions.ts'
import { insertUsage } from './db/repositories/usage.ts'
import { completeIdempotencyKey, releaseIdempotencyKey } from './db/repositories/idempotency-keys.ts'
import { buildPrompt } from './prompt.ts'
import type { LlmClient, LlmOutcome } from './llm/client.ts'
import type { Tokenizer } from './llm/tokenizer.ts'

export interface ExchangeContext {
  db: Kysely<Database>
  llm: LlmClient
  tokenizer: Tokenizer
  log: Logger
  systemPrompt: string
  contextTokens: number
  historyMaxMessages: number
  eventsNamespace: string
  requestId?: string
}

export interface ExchangeInput {
  userId: number
  sessionId: number
  content: string
  idempotencyKey?: string
  /** Streaming: deltas as the model writes; `signal` aborts the upstream call (the client left). */
  stream?: { onDelta: (text: string) => void, signal: AbortSignal }
}

/**
 * `message` is the stored reply when anything was generated (and charged); `error` says why the exchange
 * ended early, if it did. Neither is set when the client left before the model wrote anything.
 */
export interface ExchangeResult { message?: ChatMessage, error?: ProblemError, sessionGone?: boolean }

interface Usage { prompt_tokens: number, completion_tokens: number, usage_source: UsageSource }

/** Throws a ProblemError when the exchange failed with nothing generated (nothing is charged then). */
export async function runExchange (ctx: ExchangeContext, input: ExchangeInput): Promise<ExchangeResult> {
  const { db, log } = ctx
  const userMessage = await insertMessage(db, { session_id: input.sessionId, user_id: input.userId, role: 'user', content: input.content, content_tokens: ctx.tokenizer.count(input.content), status: 'pending', error_code: null })
  let outcome: LlmOutcome
  let promptTokens: number
  try {
    const history = await listContextMessages(db, input.sessionId, userMessage.id, ctx.historyMaxMessages)
    const prompt = buildPrompt({ systemPrompt: ctx.systemPrompt, historyNewestFirst: history, content: input.content, budget: ctx.contextTokens, tokenizer: ctx.tokenizer })
    promptTokens = prompt.tokens
    log.debug({ history_used: prompt.historyUsed, prompt_tokens: prompt.tokens }, 'prompt built')
    outcome = input.stream
      ? await ctx.llm.stream(prompt.messages, input.stream.onDelta, input.stream.signal)
      : await ctx.llm.complete(prompt.messages)
  } catch (err) {
    await failExchange(ctx, input, userMessage, 'internal_error')
    throw err
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
    : { prompt_tokens: promptTokens, completion_tokens: ctx.tokenizer.count(outcome.content), usage_source: 'estimated' }
  try {
    const recorded = await recordExchange(ctx, input, userMessage, outcome, usage)
    if (outcome.error || outcome.clientAborted) log.warn({ code: outcome.error?.code ?? 'client_closed', completion_tokens: usage.completion_tokens, usage_source: usage.usage_source }, 'partial reply stored and charged')
    return { ...recorded, error: outcome.error }
  } catch (err) {
    // The model answered but the record could not be written: this usage goes unbilled, so say so loudly.
    log.error({ err, user_id: input.userId, session_id: input.sessionId, ...usage }, 'LLM usage could not be recorded')
    await failExchange(ctx, input, userMessage, 'internal_error')
    throw err
  }
}

async function failExchange (ctx: ExchangeContext, input: ExchangeInput, userMessage: MessageRow, code: string): Promise<void> {
  try {
    await updateMessage(ctx.db, userMessage.id, { status: 'failed', error_code: code })
    if (input.idempotencyKey) await releaseIdempotencyKey(ctx.db, input.userId, input.idempotencyKey)
  } catch (err) {
    ctx.log.error({ err }, 'could not mark the failed exchange')
  }
}

async function recordExchange (ctx: ExchangeContext, input: ExchangeInput, userMessage: MessageRow, outcome: LlmOutcome, usage: Usage): Promise<{ message?: ChatMessage, sessionGone?: boolean }> {
  const subject = namespaced(ctx.eventsNamespace).subject(Subjects.usageRecorded)
  return await ctx.db.transaction().execute(async (trx) => {
    const alive = await lockSession(trx, input.sessionId)
    let message: ChatMessage | undefined
    let messageId: number
    if (alive) {
      const reply = await insertMessage(trx, {
        session_id: input.sessionId,
        user_id: input.userId,
        role: 'assistant',
        content: outcome.content,
        tokens: usage.completion_tokens,
        content_tokens: usage.usage_source === 'estimated' ? usage.completion_tokens : ctx.tokenizer.count(outcome.content),
        status: outcome.finished ? 'ok' : 'partial',
        error_code: outcome.finished ? null : outcome.error?.code ?? 'client_closed'
      })
      await updateMessage(trx, userMessage.id, { tokens: usage.prompt_tokens, status: 'ok', error_code: null })
      message = toMessage(reply)
      messageId = reply.id
    } else {
      // Deleted mid-exchange: the model's work is still charged; the id points at no stored message.
      messageId = await reserveMessageId(trx)
    }
    const event: UsageRecorded = {
      event_id: randomUUID(),
      occurred_at: new Date().toISOString(),
      user_id: input.userId,
      session_id: input.sessionId,
      message_id: messageId,
      model: ctx.llm.model,
      ...usage
    }
    await insertUsage(trx, { ...event, occurred_at: event.occurred_at })
    await writeOutbox(trx, SCHEMA, subject, event, ctx.requestId)
    if (input.idempotencyKey) {
      if (message) await completeIdempotencyKey(trx, input.userId, input.idempotencyKey, message)
      else await releaseIdempotencyKey(trx, input.userId, input.idempotencyKey)
    }
    return message ? { message } : { sessionGone: true }
  })
}
