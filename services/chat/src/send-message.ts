// Sending a message, as one use case: admit (session, Idempotency-Key, in-flight slot, balance) → call the model → record the reply and its charge.
// Regenerating the last reply is the same use case asking again for a stored user message; a title may follow, in the background.
import { createHash } from 'node:crypto'
import type { FastifyBaseLogger as Logger } from 'fastify'
import { balanceCacheKey, namespaced, Subjects, type ChatMessage, type UsageRecorded, type UsageSource } from '@chat-platform/contracts'
import { notFound, problem, ProblemError } from '@chat-platform/platform'
import type { ChatConfig } from './config.ts'
import type { ChatDeps } from './deps.ts'
import type { MessageRow, SessionRow } from './db/database.ts'
import { toMessage } from './db/repositories/messages.ts'
import { claimRegeneration, failExchange, findRegenerateTarget, findSessionWithContext, insertUserMessage, readCharges, recordReply, renewLease, type ContextMessage, type OwnCharges, type RecordedReply } from './db/repositories/exchanges.ts'
import { claimIdempotencyKey, completeIdempotencyKey, deleteExpiredIdempotencyKeys, releaseIdempotencyKey, touchIdempotencyKey } from './db/repositories/idempotency-keys.ts'
import { admissionBalance, readBalanceCopy } from './balance.ts'
import { InflightLimiter, type InflightSlot } from './inflight.ts'
import { RecordRetries, sweepStaleExchanges } from './pending-exchanges.ts'
import { buildPrompt, fixedPromptTokens } from './prompt.ts'
import { buildUsageEvent } from './usage-event.ts'
import { AutoTitles, type BackgroundSlot } from './titles.ts'
import type { LlmOutcome } from './llm/client.ts'
import type { RoutedOutcome } from './llm/router.ts'

export interface SendInput {
  userId: number
  sessionId: number
  content: string
  idempotencyKey?: string
  log: Logger
  requestId: string
  /** This exchange's model (a per-message override the route checked is configured); else the session's, else the default. */
  model?: string
}

/** Regenerate: `messageId` must be the session's last reply; its user message is asked again. */
export type RegenerateInput = Omit<SendInput, 'content'> & { messageId: number }

/** A regeneration: the user message asked again and the reply the new one replaces. */
interface Regeneration { userMessageId: number, replyId: number }

/** What admission found: the session, the turns before the message asked, and that message. */
interface Asked { session: SessionRow, history: ContextMessage[], content: string, regenerate?: Regeneration }

/** Streaming: deltas as the model writes; `signal` (the client left) aborts the upstream call. */
export interface StreamSink { onDelta: (text: string) => void, signal: AbortSignal }

/**
 * What admission decided: the stored reply of an earlier request with the same Idempotency-Key, or the
 * exchange to run (once). `exchange` returns the stored reply, or throws: a ProblemError (after a partial
 * reply was stored and charged, when the stream broke), or ClientClosedError (the streaming client left
 * before the model wrote anything: nothing charged, nobody to tell).
 */
export type Admission =
  | { replay: ChatMessage, exchange?: undefined }
  | { replay?: undefined, exchange: (stream?: StreamSink) => Promise<ChatMessage> }

export class ClientClosedError extends Error {
  constructor () { super('the client left before the model wrote anything') }
}

interface Usage { prompt_tokens: number, completion_tokens: number, usage_source: UsageSource }

/** The request an Idempotency-Key names: its session and content (`role` and `Accept` are not part of it). */
export const requestHash = (sessionId: number, content: string, model?: string) => createHash('sha256').update(JSON.stringify(model === undefined ? [sessionId, content] : [sessionId, content, model])).digest('hex')
/** The request an Idempotency-Key names on regenerate: its session and reply (never equal to a send's). */
export const regenerateHash = (sessionId: number, messageId: number) => createHash('sha256').update(JSON.stringify(['regenerate', sessionId, messageId])).digest('hex')

export class SendMessage {
  private readonly deps: ChatDeps
  private readonly config: ChatConfig
  private readonly limiter: InflightLimiter
  private readonly retries: RecordRetries
  private readonly subject: string
  private readonly titles: AutoTitles
  private timers: NodeJS.Timeout[] = []
  private sweeping: Promise<unknown> = Promise.resolve()

  constructor (deps: ChatDeps, config: ChatConfig, log: Logger) {
    this.deps = deps
    this.config = config
    this.limiter = new InflightLimiter(deps.redis, { max: config.CHAT_MAX_INFLIGHT, ttlMs: config.CHAT_INFLIGHT_TTL_MS, log })
    this.retries = new RecordRetries({ retryMs: config.CHAT_RECORD_RETRY_MS, metrics: deps.metrics })
    this.subject = namespaced(config.EVENTS_NAMESPACE).subject(Subjects.usageRecorded)
    this.titles = new AutoTitles(deps, config, (userId, log, requestId) => this.admitBackground(userId, log, requestId))
  }

  /** The sweepers: expired idempotency keys hourly, exchanges left pending by a dead process every CHAT_PENDING_SWEEP_MS. */
  start (log: Logger): void {
    const { db, metrics, llm } = this.deps
    const { config } = this
    const sweepKeys = () => deleteExpiredIdempotencyKeys(db, config.CHAT_IDEMPOTENCY_TTL_HOURS).catch((err) => log.warn({ err: err.message }, 'idempotency key sweep failed'))
    const sweepOpts = { staleMs: config.CHAT_PENDING_STALE_MS, prices: config.MODEL_PRICES, defaultModel: config.CHAT_MODEL, eventsNamespace: config.EVENTS_NAMESPACE, log, metrics, simulated: llm.simulated }
    const sweepPending = () => {
      this.sweeping = sweepStaleExchanges(db, sweepOpts).catch((err) => log.warn({ err: err.message }, 'pending exchange sweep failed'))
    }
    sweepPending()
    this.timers = [setInterval(sweepKeys, 3600_000), setInterval(sweepPending, config.CHAT_PENDING_SWEEP_MS)]
    for (const timer of this.timers) timer.unref()
  }

  /** Stops the sweepers and the background retries (what is still pending then is the next sweeper's). */
  async close (): Promise<void> {
    for (const timer of this.timers) clearInterval(timer)
    await this.sweeping
    await this.titles.close()
    await this.retries.close()
  }

  /**
   * Admission, in the order the errors are documented: 404 not the caller's session, 409 the key is used by
   * another request or still running, 402 the balance admission counts is used up, 429 no in-flight slot,
   * 503 the balance cannot be read. Without a key: the in-flight slot with billing's balance copy (one Redis
   * script), then the session with its recent turns and chat's own charges (one query). With a key the claim
   * comes first, so a replay needs neither balance nor slot. A slot taken for a refused request is given back at
   * once; so is a claimed key.
   */
  async admit (input: SendInput): Promise<Admission> {
    const makeHash = () => requestHash(input.sessionId, input.content, input.model)
    if (!input.idempotencyKey) {
      const both = this.acquireWithSession(input)
      return await this.admitExchange(input, makeHash, both.then((b) => b.found), both.then((b) => b.taken))
    }
    const found = findSessionWithContext(this.deps.db, input.sessionId, input.userId, this.config.CHAT_HISTORY_MAX_MESSAGES)
      .then((s) => s && { session: s.session, history: s.history, content: input.content })
    return await this.admitExchange(input, makeHash, found)
  }

  /**
   * A send without a key: the slot as `acquire` takes it, then the session with its turns and chat's charges in
   * one statement, read after the slot is held as `acquire` reads them (one round trip less than side by side).
   * With no slot free the session is still looked up, without the charges: a 404 comes before a 429.
   */
  private async acquireWithSession (input: SendInput): Promise<{ found: Asked | undefined, taken: Acquired }> {
    const { slot, value } = await this.limiter.acquireAndRead(input.userId, balanceCacheKey(input.userId))
    try {
      const s = await findSessionWithContext(this.deps.db, input.sessionId, input.userId, this.config.CHAT_HISTORY_MAX_MESSAGES, undefined, slot !== null)
      return { found: s && { session: s.session, history: s.history, content: input.content }, taken: { slot, cached: value, charges: s?.charges } }
    } catch (err) {
      await slot?.release()
      throw err
    }
  }

  /**
   * Regenerate: admitted as a send is, the reply checked after the key's (so a replay still replays once the reply
   * is superseded): 409 not_last_reply unless it is the session's last one. The exchange asks again for its user
   * message with the turns before it, and the new reply replaces it (DESIGN §6.4).
   */
  async admitRegenerate (input: RegenerateInput): Promise<Admission> {
    const { db } = this.deps
    const { sessionId, userId, messageId } = input
    const found = findRegenerateTarget(db, sessionId, userId, messageId).then(async (target): Promise<Asked | 'not_last' | undefined> => {
      if (target === undefined || target === 'not_last') return target
      const s = await findSessionWithContext(db, sessionId, userId, this.config.CHAT_HISTORY_MAX_MESSAGES, target.id)
      return s && { ...s, content: target.content, regenerate: { userMessageId: target.id, replyId: messageId } }
    })
    return await this.admitExchange(input, () => regenerateHash(sessionId, messageId), found)
  }

  private async admitExchange (input: Omit<SendInput, 'content'>, makeHash: () => string, found: Promise<Asked | 'not_last' | undefined>, acquired?: Promise<Acquired>): Promise<Admission> {
    const { db } = this.deps
    const { userId, idempotencyKey: key } = input
    const hash = key ? makeHash() : undefined
    const taken = key ? undefined : acquired ?? this.acquire(userId)
    let slot: InflightSlot | null = null
    let asked: Asked
    let contentTokens: number
    try {
      const [got, acquired] = await Promise.all([found, taken])
      slot = acquired?.slot ?? null
      if (!got) throw notFound('session')
      if (key) {
        const claim = await claimIdempotencyKey(db, { user_id: userId, key, request_hash: hash!, ttlHours: this.config.CHAT_IDEMPOTENCY_TTL_HOURS, staleMs: this.config.CHAT_INFLIGHT_TTL_MS })
        if (claim.kind === 'mismatch') throw problem('idempotency_conflict', 'This Idempotency-Key was already used with a different request.')
        if (claim.kind === 'gone') throw notFound('session')
        if (claim.kind === 'in_progress') throw problem('idempotency_conflict', 'A request with this Idempotency-Key is still in progress; retry when it has finished.', { headers: { 'retry-after': '1' } })
        if (claim.kind === 'replay') {
          input.log.info('idempotent replay')
          return { replay: claim.response as ChatMessage }
        }
        try {
          if (got === 'not_last') throw notLastReply()
          contentTokens = this.fits(input, got)
          const free = await this.acquire(userId)
          slot = free.slot
          slot = await this.admitOn(userId, free, input)
        } catch (err) {
          await releaseIdempotencyKey(db, userId, key)
          throw err
        }
      } else {
        if (got === 'not_last') throw notLastReply()
        contentTokens = this.fits(input, got)
        slot = await this.admitOn(userId, acquired!, input)
      }
      asked = got as Asked // 'not_last' was refused on both paths
    } catch (err) {
      // Both ran: wait for the other one too, and give back a slot however far the checks got.
      const [, got] = await Promise.allSettled([found, taken])
      const held = slot ?? (got.status === 'fulfilled' ? got.value?.slot : null)
      if (held) await held.release()
      throw err
    }
    const held = slot
    let ran = false
    return {
      exchange: async (stream) => {
        if (ran) throw new Error('an admitted exchange runs once')
        ran = true
        const message = await this.hold(held, key ? () => touchIdempotencyKey(db, userId, key) : undefined, () =>
          this.exchange({ ...input, requestHash: hash, history: asked.history, content: asked.content, contentTokens, regenerate: asked.regenerate, settings: asked.session }, stream))
        this.titles.start({ userId, sessionId: input.sessionId, sessionTitle: asked.session.title, userContent: asked.content, reply: message.content, log: input.log, requestId: input.requestId })
        return message
      }
    }
  }

  /**
   * 400 validation_failed when the system prompt and the message alone exceed the model's prompt budget (its window
   * less CHAT_MAX_OUTPUT_TOKENS): no history trimming can make such a prompt fit (DESIGN §6.4, issue #15), so it is
   * refused before a slot, a balance or the model is involved. Else the message's token count (the prompt reuses it).
   */
  private fits (input: Pick<SendInput, 'model'>, asked: Asked): number {
    const model = this.deps.models.resolve(input.model, asked.session.model)
    const systemPrompt = asked.session.system_prompt ?? this.config.CHAT_SYSTEM_PROMPT
    const budget = this.deps.models.promptBudget(model)
    const fixed = fixedPromptTokens({ systemPrompt, content: asked.content, tokenizer: this.deps.tokenizer })
    if (fixed.tokens > budget) {
      throw problem('validation_failed', `The message is too long for the model ${model.id}: with the system prompt it takes ${fixed.tokens} tokens, and the model's prompt budget is ${budget} tokens (its window of ${model.context_tokens} less ${this.config.CHAT_MAX_OUTPUT_TOKENS} kept for the reply).`)
    }
    return fixed.contentTokens
  }

  /**
   * Admission of a background call (an automatic title), which never answers with an error: a runner holding an
   * in-flight slot when one is free and the balance admission counts is above 0; null otherwise (skipped).
   */
  private async admitBackground (userId: number, log: Logger, requestId: string): Promise<BackgroundSlot | null> {
    let got: Acquired
    try {
      got = await this.acquire(userId)
    } catch {
      return null
    }
    const slot = got.slot
    if (!slot) return null
    try {
      const copy = await readBalanceCopy({ redis: this.deps.redis, billingUrl: this.config.BILLING_URL, log, requestId }, userId, got.cached)
      if (admissionBalance(copy, got.charges!, this.config.MODEL_PRICES, this.config.CHAT_MODEL) > 0) {
        return async (fn) => await this.hold(slot, undefined, fn)
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'background call: the balance cannot be read')
    }
    await slot.release()
    return null
  }

  /**
   * The in-flight slot with billing's copy of the balance (one Redis script), then chat's own charges. The
   * charges are read after the slot is held: an exchange they do not count either still holds a slot or
   * committed after this read began, so at most CHAT_MAX_INFLIGHT exchanges are admitted past zero.
   */
  private async acquire (userId: number): Promise<Acquired> {
    const { slot, value } = await this.limiter.acquireAndRead(userId, balanceCacheKey(userId))
    if (!slot) return { slot, cached: value }
    try {
      return { slot, cached: value, charges: await readCharges(this.deps.db, userId) }
    } catch (err) {
      await slot.release()
      throw err
    }
  }

  /** 402 when the balance admission counts is used up, 429 when no slot was free; else the slot. */
  private async admitOn (userId: number, got: Acquired, input: Pick<SendInput, 'log' | 'requestId'>): Promise<InflightSlot> {
    const copy = await readBalanceCopy({ redis: this.deps.redis, billingUrl: this.config.BILLING_URL, log: input.log, requestId: input.requestId }, userId, got.cached)
    if (!got.slot || !got.charges) {
      if (copy.balance <= 0) throw usedUp()
      throw problem('rate_limited', `At most ${this.config.CHAT_MAX_INFLIGHT} messages can be in progress at once; wait for a reply.`, { headers: { 'retry-after': '1' } })
    }
    if (admissionBalance(copy, got.charges, this.config.MODEL_PRICES, this.config.CHAT_MODEL) <= 0) throw usedUp()
    return got.slot
  }

  /**
   * Runs `fn` holding the slot (and the key's claim) renewed. A reply generated but not yet recorded keeps
   * its slot until the charge lands: admission must count it. If recording gives up, the slot is left to
   * expire, by when the exchange's lease has too (and admission counts it as stale pending).
   */
  private async hold<T> (slot: InflightSlot, touch: (() => Promise<void>) | undefined, fn: () => Promise<T>): Promise<T> {
    const renewer = setInterval(() => {
      slot.renew().catch(() => {})
      touch?.().catch(() => {})
    }, Math.max(1000, Math.floor(this.config.CHAT_INFLIGHT_TTL_MS / 3)))
    renewer.unref()
    let landed: Promise<boolean> | undefined
    try {
      return await fn()
    } catch (err) {
      if (!(err instanceof RecordPendingError)) throw err
      landed = err.landed
      throw err.problem
    } finally {
      if (!landed) {
        clearInterval(renewer)
        await slot.release()
      } else {
        landed.then(async (ok) => {
          clearInterval(renewer)
          if (ok) await slot.release()
          else setTimeout(() => { slot.release().catch(() => {}) }, this.config.CHAT_INFLIGHT_TTL_MS).unref()
        }).catch(() => {})
      }
    }
  }

  /**
   * One exchange: the user's message is stored (pending, leased) while the model is already asked, then the
   * reply, its usage, the usage event and the user's charge are recorded in one statement (or, when nothing
   * was generated, the message is marked failed and nothing is charged). A record that fails after output is
   * retried until it lands, never dropped.
   */
  private async exchange (input: Exchange & { history: ContextMessage[] }, stream?: StreamSink): Promise<ChatMessage> {
    const { db, llm, tokenizer } = this.deps
    const { config } = this
    const { log } = input
    // The message's model, else the session's (one removed from config since: the default), and the session's system prompt.
    const model = this.deps.models.resolve(input.model, input.settings?.model)
    const systemPrompt = input.settings?.system_prompt ?? config.CHAT_SYSTEM_PROMPT
    const prompt = buildPrompt({ systemPrompt, historyNewestFirst: input.history, content: input.content, contentTokens: input.contentTokens, budget: this.deps.models.promptBudget(model), tokenizer })
    log.debug({ model: model.id, history_used: prompt.historyUsed, prompt_tokens: prompt.tokens }, 'prompt built')
    // The call is started first (its request leaves before the insert's), then the user's message is stored,
    // so its commit is not on the first byte's path; if it cannot be stored, the call is stopped and nothing
    // is charged. A JSON caller that hangs up does not stop the exchange (the reply is stored and listed later).
    // A regeneration claims its user message first: one that lost a race is a 409 before anything is generated.
    const notStored = new AbortController()
    const ask = () => stream
      ? llm.stream(prompt.messages, stream.onDelta, AbortSignal.any([stream.signal, notStored.signal]), model.id)
      : llm.complete(prompt.messages, notStored.signal, model.id)
    let call: Promise<RoutedOutcome>
    let stored: Promise<MessageRow & { reply_id: number }>
    if (input.regenerate) {
      stored = this.claim(input.regenerate, prompt.tokens, model.id)
      call = stored.then(ask)
    } else {
      call = ask()
      stored = insertUserMessage(db, {
        session_id: input.sessionId,
        user_id: input.userId,
        role: 'user',
        content: input.content,
        content_tokens: prompt.contentTokens,
        status: 'pending',
        error_code: null,
        exchange_model: model.id,
        exchange_prompt_tokens: prompt.tokens,
        lease_ms: config.CHAT_INFLIGHT_TTL_MS
      })
    }
    stored.catch(() => notStored.abort())
    // The lease tells the sweeper this exchange's process is alive, however long the model takes.
    const lease = setInterval(() => {
      stored.then((m) => renewLease(db, m.id, config.CHAT_INFLIGHT_TTL_MS)).catch(() => {})
    }, Math.max(1000, Math.floor(config.CHAT_INFLIGHT_TTL_MS / 3)))
    lease.unref()
    try {
      let outcome: RoutedOutcome | undefined
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
        if (!(err instanceof ProblemError)) log.error({ err: (err as Error).message }, 'the user message could not be stored; the model call was stopped, nothing is charged')
        if (input.idempotencyKey) await releaseIdempotencyKey(db, input.userId, input.idempotencyKey).catch(() => {})
        throw err
      }
      if (!outcome) {
        await this.fail(input, userMessage, 'internal_error')
        throw callError
      }
      return await this.record(input, prompt.tokens, userMessage, outcome)
    } finally {
      clearInterval(lease)
    }
  }

  /** A regeneration's user message, claimed pending (as a send's is inserted); 409 when the reply is no longer the last. */
  private async claim (regenerate: Regeneration, promptTokens: number, model: string): Promise<MessageRow & { reply_id: number }> {
    const claimed = await claimRegeneration(this.deps.db, { userMessageId: regenerate.userMessageId, replyId: regenerate.replyId, model, promptTokens, leaseMs: this.config.CHAT_INFLIGHT_TTL_MS })
    if (!claimed) throw notLastReply()
    return claimed
  }

  /** Records what the model answered, or marks the exchange failed when it generated nothing. */
  private async record (input: Exchange, promptTokens: number, userMessage: MessageRow & { reply_id: number }, outcome: RoutedOutcome): Promise<ChatMessage> {
    const { log } = input
    if (!outcome.finished && outcome.content === '') {
      const code = outcome.error?.code ?? 'client_closed'
      log.warn({ code, cause: (outcome.error?.cause as Error | undefined)?.message }, 'exchange failed with no output; nothing charged')
      await this.fail(input, userMessage, code)
      throw outcome.error ?? new ClientClosedError()
    }
    const { tokenizer } = this.deps
    const usage: Usage = outcome.usage
      ? { ...outcome.usage, usage_source: 'provider' }
      : { prompt_tokens: promptTokens, completion_tokens: tokenizer.count(outcome.content), usage_source: 'estimated' }
    // The reply's id was reserved with the user message; if the session was deleted meanwhile it names no stored message.
    // Charged once, for the model asked, whichever provider answered (the one that wrote the reply).
    const event = buildUsageEvent({ user_id: input.userId, session_id: input.sessionId, message_id: userMessage.reply_id, model: outcome.model, ...usage, simulated: outcome.simulated }, this.config.MODEL_PRICES)
    if (outcome.attempts > 0) log.info({ provider: outcome.provider, model: outcome.model, failovers: outcome.attempts }, 'answered after failover')
    let message: ChatMessage | undefined
    try {
      message = await this.writeRecord(input, userMessage, outcome, event)
    } catch (err) {
      // The model answered (the client may have the text) but the record could not be written: keep trying until
      // it lands. The reserved reply id makes a second write of the same exchange a no-op, so a COMMIT whose
      // answer was lost is not charged twice; if this process dies first, the sweeper settles the exchange.
      log.error({ err, user_id: input.userId, session_id: input.sessionId, ...usage }, 'LLM usage could not be recorded; retrying in the background')
      const landed = this.retries.retry('record reply', async () => { await this.writeRecord(input, userMessage, outcome, event) }, log)
      throw new RecordPendingError(new ProblemError('service_unavailable', 'The reply could not be saved yet; it will appear in the session, and be charged, once storage is back.', { cause: err }), landed)
    }
    if (outcome.error || outcome.clientAborted) log.warn({ code: outcome.error?.code ?? 'client_closed', completion_tokens: usage.completion_tokens, usage_source: usage.usage_source }, 'partial reply stored and charged')
    if (outcome.error) throw outcome.error
    if (!message) throw notFound('session')
    return message
  }

  /**
   * The reply, its usage and charge in one statement; with an Idempotency-Key the key's answer is stored in the
   * same transaction, so a retry can never be charged twice. Undefined when the session was deleted meanwhile
   * (the usage is charged all the same).
   */
  private async writeRecord (input: Exchange, userMessage: MessageRow & { reply_id: number }, outcome: LlmOutcome, event: UsageRecorded): Promise<ChatMessage | undefined> {
    const key = input.idempotencyKey
    const record: RecordedReply = {
      userMessageId: userMessage.id,
      promptTokens: event.prompt_tokens,
      reply: {
        id: userMessage.reply_id,
        session_id: input.sessionId,
        user_id: input.userId,
        content: outcome.content,
        tokens: event.completion_tokens,
        content_tokens: event.usage_source === 'estimated' ? event.completion_tokens : this.deps.tokenizer.count(outcome.content),
        status: outcome.finished ? 'ok' : 'partial',
        error_code: outcome.finished ? null : outcome.error?.code ?? 'client_closed'
      },
      event,
      subject: this.subject,
      requestId: input.requestId,
      idempotency: key && input.requestHash ? { key, request_hash: input.requestHash } : undefined,
      supersedes: input.regenerate?.replyId
    }
    // Once committed, the usage event is in the outbox: this process's relay publishes it now (recordReply sends no NOTIFY).
    if (!key) {
      const { reply } = await recordReply(this.deps.db, record)
      this.deps.relay.kick()
      return reply ? toMessage(reply) : undefined
    }
    const message = await this.deps.db.transaction().execute(async (trx) => {
      const { reply } = await recordReply(trx, record)
      const message = reply ? toMessage(reply) : undefined
      if (message) await completeIdempotencyKey(trx, input.userId, key, message)
      else await releaseIdempotencyKey(trx, input.userId, key)
      return message
    })
    this.deps.relay.kick()
    return message
  }

  /** Marks a pending exchange failed, a regeneration back to its reply (nothing charged; the key is freed); while Postgres is away, retried in the background. */
  private async fail (input: SendInput, userMessage: MessageRow & { reply_id: number }, code: string): Promise<void> {
    const { db } = this.deps
    const write = async () => {
      await failExchange(db, userMessage.id, userMessage.reply_id, code)
      if (input.idempotencyKey) await releaseIdempotencyKey(db, input.userId, input.idempotencyKey)
    }
    try {
      await write()
    } catch (err) {
      input.log.error({ err }, 'could not mark the failed exchange; retrying in the background')
      this.retries.retry('mark failed', write, input.log).catch(() => {})
    }
  }
}

/** An in-flight slot (null: none free) with billing's balance copy as Redis held it, and chat's charges read after it. */
interface Acquired { slot: InflightSlot | null, cached?: string | null, charges?: OwnCharges }

/** Thrown inside the use case when the reply is retried in the background: `problem` goes out, the slot waits for `landed`. */
class RecordPendingError extends Error {
  readonly problem: ProblemError
  readonly landed: Promise<boolean>
  constructor (problem: ProblemError, landed: Promise<boolean>) {
    super(problem.message)
    this.problem = problem
    this.landed = landed
  }
}

/** An exchange as it runs: the message asked (a send's, or a regeneration's stored one) and the key's request. */
type Exchange = SendInput & { requestHash?: string, contentTokens?: number, regenerate?: Regeneration, settings?: Pick<SessionRow, 'model' | 'system_prompt'> }

const notLastReply = () => problem('not_last_reply', 'Only the session\'s last reply can be regenerated.')
const usedUp = () => problem('insufficient_balance', 'Your token balance is used up; recharge to keep chatting.')
