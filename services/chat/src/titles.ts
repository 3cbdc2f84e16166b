// Automatic session titles (DESIGN §6.4): after an exchange of a session still titled 新会话, a short title from the model, in the background.
import type { FastifyBaseLogger as Logger } from 'fastify'
import { namespaced, Subjects } from '@chat-platform/contracts'
import type { PromptMessage } from '@chat-platform/tokenizer'
import type { ChatConfig } from './config.ts'
import type { ChatDeps } from './deps.ts'
import { needsTitle, recordTitle } from './db/repositories/titles.ts'
import { DEFAULT_TITLE } from './routes/sessions.ts'
import { buildUsageEvent } from './usage-event.ts'

export const TITLE_MAX_CHARS = 30
/**
 * The output a title call may take (its max_tokens): a 30-character title is at most a few dozen tokens, so the user is
 * never charged for a rambling answer that cleanTitle would cut anyway (CHAT_MAX_OUTPUT_TOKENS is for replies).
 */
export const TITLE_MAX_TOKENS = 64
// Enough of the exchange to name it; a title call stays cheap however long the messages are.
const EXCERPT_CHARS = 600
const TITLE_INSTRUCTION = `Write a short title (at most ${TITLE_MAX_CHARS} characters) for the conversation below, in the language the user writes in. Answer with the title only: no quotes, no final punctuation.`

/** The tiny prompt of a title: the instruction, the user's message and the reply, each cut to an excerpt. */
export function titlePrompt (userContent: string, reply: string): PromptMessage[] {
  const cut = (s: string) => s.length > EXCERPT_CHARS ? `${s.slice(0, EXCERPT_CHARS)}…` : s
  return [
    { role: 'system', content: TITLE_INSTRUCTION },
    { role: 'user', content: `User: ${cut(userContent)}\n\nAssistant: ${cut(reply)}` }
  ]
}

const QUOTES = /^["'“”‘’「」『』《》〈〉«»`*\s]+|["'“”‘’「」『』《》〈〉«»`*\s]+$/gu

/** The model's answer as a title: its first line, a leading "Title:" and quotes stripped, trimmed, at most 30 characters; undefined when nothing is left. */
export function cleanTitle (raw: string): string | undefined {
  const line = raw.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '') ?? ''
  let title = line.replace(/^(title|标题)\s*[:：]\s*/iu, '').replace(QUOTES, '').replace(/\s+/gu, ' ').trim()
  const chars = Array.from(title)
  if (chars.length > TITLE_MAX_CHARS) title = chars.slice(0, TITLE_MAX_CHARS).join('').trim()
  title = title.replace(/[。.!！?？,，;；:：、]+$/u, '').trim()
  return title === '' ? undefined : title
}

/** Runs `fn` holding an in-flight slot of the user's (renewed, released after). */
export type BackgroundSlot = <T>(fn: () => Promise<T>) => Promise<T>

export interface TitleInput {
  userId: number
  sessionId: number
  /** The session's title when the exchange was admitted: only 新会话 gets an automatic one. */
  sessionTitle: string
  userContent: string
  reply: string
  log: Logger
  requestId: string
}

/**
 * Starts title calls in the background and keeps track of them (close waits for them). Each takes an in-flight
 * slot through `admit` (null: skipped, because the balance admission counts is ≤ 0, no slot is free, or the
 * balance cannot be read), so titles keep to the overdraft bound of DESIGN §3.
 */
export class AutoTitles {
  private readonly deps: ChatDeps
  private readonly config: ChatConfig
  private readonly admit: (userId: number, log: Logger, requestId: string) => Promise<BackgroundSlot | null>
  private readonly subject: string
  private readonly running = new Set<Promise<void>>()
  // Shutdown stops title calls still waiting for the model (nothing generated, nothing charged) rather than wait them out.
  private readonly closing = new AbortController()

  constructor (deps: ChatDeps, config: ChatConfig, admit: (userId: number, log: Logger, requestId: string) => Promise<BackgroundSlot | null>) {
    this.deps = deps
    this.config = config
    this.admit = admit
    this.subject = namespaced(config.EVENTS_NAMESPACE).subject(Subjects.usageRecorded)
  }

  /** After a recorded reply: a title for the session if it still needs one. Never throws, never waited for. */
  start (input: TitleInput): void {
    if (!this.config.CHAT_AUTO_TITLE || input.sessionTitle !== DEFAULT_TITLE || this.closing.signal.aborted) return
    const run = this.run(input).catch((err) => input.log.warn({ err: (err as Error).message, session_id: input.sessionId }, 'automatic title failed'))
    this.running.add(run)
    run.finally(() => this.running.delete(run)).catch(() => {})
  }

  async close (): Promise<void> {
    this.closing.abort()
    await Promise.allSettled([...this.running])
  }

  private async run (input: TitleInput): Promise<void> {
    const { db, redis } = this.deps
    const { log } = input
    if (!(await needsTitle(db, input.sessionId, DEFAULT_TITLE))) return
    const slot = await this.admit(input.userId, log, input.requestId)
    if (!slot) {
      log.info({ session_id: input.sessionId }, 'automatic title skipped: no balance or no free in-flight slot')
      return
    }
    // One title call per session at a time (two first exchanges finishing together): the loser asks nothing.
    const lock = `chat:title:${input.sessionId}`
    const locked = await slot(async () => {
      if (await redis.set(lock, '1', 'PX', this.config.CHAT_INFLIGHT_TTL_MS, 'NX') !== 'OK') return false
      try {
        await this.generate(input)
      } finally {
        await redis.del(lock).catch(() => {})
      }
      return true
    })
    if (!locked) log.debug({ session_id: input.sessionId }, 'automatic title already being generated')
  }

  /** Asks the model, then records the charge and the title in one statement (a failed call charges nothing). */
  private async generate (input: TitleInput): Promise<void> {
    const { db, llm, tokenizer } = this.deps
    const { log } = input
    const messages = titlePrompt(input.userContent, input.reply)
    const outcome = await llm.complete(messages, this.closing.signal, this.config.CHAT_TITLE_MODEL ?? llm.model, TITLE_MAX_TOKENS)
    if (!outcome.finished || outcome.content === '') {
      log.warn({ code: outcome.error?.code ?? (outcome.clientAborted ? 'shutting_down' : undefined), session_id: input.sessionId }, 'automatic title: the model gave no answer; nothing charged')
      return
    }
    const usage = outcome.usage
      ? { ...outcome.usage, usage_source: 'provider' as const }
      : { prompt_tokens: tokenizer.countPrompt(messages), completion_tokens: tokenizer.count(outcome.content), usage_source: 'estimated' as const }
    const event = buildUsageEvent({ user_id: input.userId, session_id: input.sessionId, message_id: null, model: outcome.model, ...usage, simulated: outcome.simulated, purpose: 'title' }, this.config.MODEL_PRICES)
    const title = cleanTitle(outcome.content)
    const recorded = await recordTitle(db, { event, subject: this.subject, title: title ?? null, untitled: DEFAULT_TITLE, requestId: input.requestId })
    // The charge's event is in the outbox: this process's relay publishes it now (no NOTIFY, see recordReply).
    this.deps.relay.kick()
    log.info({ session_id: input.sessionId, ...usage, charged: recorded.charged, titled: recorded.titled }, recorded.titled ? 'automatic title set' : 'automatic title not applied (renamed meanwhile, or titled before)')
  }
}
