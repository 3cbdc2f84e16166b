// One OpenAI-compatible provider through the openai SDK: one call, JSON or streamed, with our own deadlines and error mapping (failover: router.ts).
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai'
import { ProblemError } from '@chat-platform/platform'
import type { FastifyBaseLogger as Logger } from 'fastify'
import type { PromptMessage } from '@chat-platform/tokenizer'
import type { ChatMetrics, LlmCallOutcome } from '../metrics.ts'
import { providerFetch } from './fetch.ts'

export interface LlmOptions {
  baseURL?: string
  apiKey: string
  /** The model asked for when a call names none. */
  model: string
  timeoutMs: number
  /** The SDK's own retries: 0 under the router (each attempt is one request; the router decides what follows). */
  maxRetries: number
  maxOutputTokens?: number
  log: Logger
  /** The metrics' provider label: CHAT_PROVIDERS' name, `simulator`, or the provider's host. */
  provider?: string
  /** The offline simulator answers (no OPENAI_API_KEY): usage events say so. */
  simulated?: boolean
  metrics?: ChatMetrics
}

export interface LlmUsage { prompt_tokens: number, completion_tokens: number }

/**
 * What came back. `error` is set when the call failed; `content` may still hold what the model wrote before
 * (a cut stream, a timeout between chunks, or the client leaving, `clientAborted`).
 */
export interface LlmOutcome {
  content: string
  usage?: LlmUsage
  finished: boolean
  clientAborted: boolean
  error?: ProblemError
}

export function mapLlmError (err: unknown, timedOut: boolean): ProblemError {
  if (timedOut || err instanceof APIConnectionTimeoutError) return new ProblemError('upstream_timeout', 'The language model did not answer in time; try again.', { cause: err })
  if (err instanceof APIConnectionError) return new ProblemError('service_unavailable', 'The language model cannot be reached; try again shortly.', { cause: err })
  if (err instanceof APIError && !(err instanceof APIUserAbortError)) return new ProblemError('upstream_error', `The language model answered with an error${err.status ? ` (status ${err.status})` : ''}.`, { cause: err })
  return new ProblemError('upstream_error', 'The connection to the language model broke off.', { cause: err })
}

/**
 * Takes the provider's API key out of an error before anything keeps or logs it: some OpenAI-compatible providers
 * echo the key they were sent in their error body, which the SDK copies into the error's message (and so its stack),
 * body, `param` and `code`. The error stays the SDK's (failover reads its status and headers).
 */
export function redactKey<E> (err: E, apiKey: string): E {
  if (!(err instanceof Error) || apiKey.length < 8) return err
  const clean = (v: unknown, depth = 0): unknown => {
    if (typeof v === 'string') return v.includes(apiKey) ? v.split(apiKey).join('[redacted]') : v
    if (depth > 4 || v === null || typeof v !== 'object') return v
    if (Array.isArray(v)) return v.map((x) => clean(x, depth + 1))
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clean(x, depth + 1)]))
  }
  err.message = clean(err.message) as string
  if (err.stack) err.stack = clean(err.stack) as string
  if (err instanceof APIError) {
    const e = err as unknown as Record<'error' | 'param' | 'code' | 'type', unknown>
    for (const k of ['error', 'param', 'code', 'type'] as const) e[k] = clean(e[k])
  }
  if (err.cause !== undefined && err.cause !== err) redactKey(err.cause, apiKey)
  return err
}

const usageOf = (u: { prompt_tokens?: number, completion_tokens?: number } | null | undefined): LlmUsage | undefined =>
  u && Number.isInteger(u.prompt_tokens) && Number.isInteger(u.completion_tokens) ? { prompt_tokens: u.prompt_tokens!, completion_tokens: u.completion_tokens! } : undefined

const outcomeOf = (o: LlmOutcome): LlmCallOutcome =>
  o.finished ? 'ok' : o.content !== '' ? 'partial' : o.error ? o.error.code as LlmCallOutcome : 'client_closed'

export class LlmClient {
  readonly model: string
  readonly provider: string
  readonly simulated: boolean
  private readonly client: OpenAI
  private readonly opts: LlmOptions
  private readonly secret: string

  constructor (opts: LlmOptions) {
    this.opts = opts
    // The simulator's placeholder key is no secret (and 'simulated' would be cut out of its own error messages).
    this.secret = opts.simulated ? '' : opts.apiKey
    this.model = opts.model
    this.provider = opts.provider ?? 'openai'
    this.simulated = opts.simulated ?? false
    // The SDK's own timeout covers only the wait for headers; the deadlines below cover the body too.
    // Its requests go out through undici.request (fetch.ts), not the global fetch.
    this.client = new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseURL, timeout: opts.timeoutMs, maxRetries: opts.maxRetries, fetch: providerFetch })
  }

  // max_tokens bounds what one exchange can cost (with the prompt budget): CHAT_MAX_OUTPUT_TOKENS, or a call's own lower cap.
  private params (messages: PromptMessage[], model: string, maxTokens?: number) {
    const cap = maxTokens !== undefined && this.opts.maxOutputTokens ? Math.min(maxTokens, this.opts.maxOutputTokens) : maxTokens ?? this.opts.maxOutputTokens
    return { model, messages, ...(cap ? { max_tokens: cap } : {}) }
  }

  /**
   * One JSON completion, bounded as a whole by the timeout (one request: under the router the SDK does not retry).
   * `maxTokens`: this call's output cap, below CHAT_MAX_OUTPUT_TOKENS (a title needs a few dozen tokens).
   */
  async complete (messages: PromptMessage[], signal?: AbortSignal, model: string = this.model, maxTokens?: number): Promise<LlmOutcome> {
    const started = performance.now()
    return this.measured('json', model, started, await this.callJson(messages, model, signal, maxTokens))
  }

  /**
   * A streamed completion with usage requested. The timeout bounds the wait for the first chunk and every
   * gap between chunks. `signal` (the client leaving) aborts the upstream request at once.
   */
  async stream (messages: PromptMessage[], onDelta: (text: string) => void, signal?: AbortSignal, model: string = this.model): Promise<LlmOutcome> {
    const started = performance.now()
    let first = true
    const outcome = await this.callStream(messages, model, (text) => {
      if (first) {
        first = false
        this.opts.metrics?.llmFirstToken({ provider: this.provider, model }, (performance.now() - started) / 1000)
      }
      onDelta(text)
    }, signal)
    return this.measured('stream', model, started, outcome)
  }

  private measured (mode: 'json' | 'stream', model: string, started: number, outcome: LlmOutcome): LlmOutcome {
    this.opts.metrics?.llmCall({ provider: this.provider, model, mode }, outcomeOf(outcome), (performance.now() - started) / 1000)
    return outcome
  }

  private async callJson (messages: PromptMessage[], model: string, signal?: AbortSignal, maxTokens?: number): Promise<LlmOutcome> {
    const ac = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; ac.abort() }, this.opts.timeoutMs)
    const onAbort = () => ac.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const res = await this.client.chat.completions.create({ ...this.params(messages, model, maxTokens), stream: false }, { signal: ac.signal })
      const content = res.choices[0]?.message?.content ?? ''
      return { content, usage: usageOf(res.usage), finished: true, clientAborted: false }
    } catch (err) {
      const clientAborted = !timedOut && (signal?.aborted ?? false)
      return { content: '', finished: false, clientAborted, error: clientAborted ? undefined : mapLlmError(redactKey(err, this.secret), timedOut) }
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }

  private async callStream (messages: PromptMessage[], model: string, onDelta: (text: string) => void, signal?: AbortSignal): Promise<LlmOutcome> {
    const ac = new AbortController()
    let timedOut = false
    let timer: NodeJS.Timeout | undefined
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => { timedOut = true; ac.abort() }, this.opts.timeoutMs)
    }
    const onAbort = () => ac.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted) ac.abort()
    let content = ''
    let usage: LlmUsage | undefined
    let finished = false
    let error: ProblemError | undefined
    arm()
    try {
      const stream = await this.client.chat.completions.create({ ...this.params(messages, model), stream: true, stream_options: { include_usage: true } }, { signal: ac.signal })
      // The SDK's iterator ends quietly (no throw) when aborted, so the flags above tell how it ended.
      for await (const chunk of stream) {
        arm()
        const choice = chunk.choices[0]
        const piece = choice?.delta?.content
        if (piece) {
          content += piece
          onDelta(piece)
        }
        if (choice?.finish_reason) finished = true
        const u = usageOf(chunk.usage)
        if (u) usage = u
      }
    } catch (err) {
      if (!(err instanceof APIUserAbortError) || timedOut) error = mapLlmError(redactKey(err, this.secret), timedOut)
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    const clientAborted = !timedOut && (signal?.aborted ?? false)
    if (!error && !clientAborted && timedOut) error = mapLlmError(undefined, true)
    if (!error && !clientAborted && !finished) error = mapLlmError(new Error('stream ended without a finish reason'), false)
    return { content, usage, finished: finished && !error && !clientAborted, clientAborted, error }
  }
}
