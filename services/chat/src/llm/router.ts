// Failover across a model's providers: a call that fails before its first byte moves on; one that produced output never does.
import { APIError } from 'openai'
import { ProblemError } from '@chat-platform/platform'
import type { FastifyBaseLogger as Logger } from 'fastify'
import type { PromptMessage } from '@chat-platform/tokenizer'
import type { ChatMetrics } from '../metrics.ts'
import type { LlmClient, LlmOutcome } from './client.ts'
import { CircuitBreaker, type BreakerState } from './breaker.ts'

export interface RoutedProvider {
  name: string
  client: LlmClient
  /** The model ids it serves (CHAT_PROVIDERS' `models`; every configured model in the single-provider setup). */
  models: string[]
  /** The offline simulator: its usage is labelled simulated. */
  simulated: boolean
}

export interface RouterOptions {
  defaultModel: string
  /** CHAT_LLM_MAX_RETRIES: attempts after one round over the model's providers, from the first again. */
  maxRetries: number
  /** CHAT_LLM_RETRY_AFTER_MAX_MS: a 429 asking to wait at most this long is waited out on the same provider, once. */
  retryAfterMaxMs: number
  /** CHAT_LLM_RETRY_AFTER_CAP_MS: a longer Retry-After keeps its provider out this long (its circuit open), no longer. */
  retryAfterCapMs?: number
  breakerFailures: number
  breakerCooldownMs: number
  log: Logger
  metrics?: ChatMetrics
  /** Tests: how the router waits (Retry-After, backoff). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
}

/** What came back, and from whom: `provider` answered (or failed last), `simulated` when that was the simulator. */
export interface RoutedOutcome extends LlmOutcome {
  model: string
  provider?: string
  simulated: boolean
  /** Providers tried before the one that answered (failovers). */
  attempts: number
}

/** Why an attempt that produced nothing failed, and whether the next provider may be asked. */
interface Failure { reason: string, retriable: boolean, retryAfterMs?: number, status?: number }

const STATE_VALUE: Record<BreakerState, 0 | 1 | 2> = { closed: 0, half_open: 1, open: 2 }

/** The wait a 429 (or 503) asks for: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date. */
export function retryAfterMs (headers: Headers | undefined, now = Date.now()): number | undefined {
  const ms = Number(headers?.get('retry-after-ms') ?? Number.NaN)
  if (Number.isFinite(ms) && ms >= 0) return ms
  const raw = headers?.get('retry-after')
  if (!raw) return undefined
  const seconds = Number(raw)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const date = Date.parse(raw)
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined
}

/**
 * How an attempt with no output failed. Moved on from: connect errors, timeouts, 5xx, 429, 408/409, and 401/403/404
 * (a provider's key or model, not the request); not: 400, 413, 422 and other 4xx (the request itself: the next
 * provider would refuse it too).
 */
export function classifyFailure (error: ProblemError | undefined): Failure {
  if (!error) return { reason: 'broken', retriable: true }
  if (error.code === 'upstream_timeout') return { reason: 'timeout', retriable: true }
  if (error.code === 'service_unavailable') return { reason: 'connect', retriable: true }
  const cause = error.cause
  if (cause instanceof APIError && typeof cause.status === 'number') {
    const status = cause.status
    if (status === 429) return { reason: 'rate_limited', retriable: true, status, retryAfterMs: retryAfterMs(cause.headers) }
    if (status >= 500) return { reason: 'server_error', retriable: true, status, retryAfterMs: status === 503 ? retryAfterMs(cause.headers) : undefined }
    if ([401, 403, 404, 408, 409].includes(status)) return { reason: `status_${status}`, retriable: true, status }
    return { reason: `status_${status}`, retriable: false, status }
  }
  return { reason: 'broken', retriable: true }
}

const abortableSleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve) => {
  if (signal?.aborted) return resolve()
  const timer = setTimeout(done, ms)
  function done () {
    clearTimeout(timer)
    signal?.removeEventListener('abort', done)
    resolve()
  }
  signal?.addEventListener('abort', done, { once: true })
})

interface Entry extends RoutedProvider { breaker: CircuitBreaker }

export class LlmRouter {
  /** The default model's id. */
  readonly model: string
  /** Every provider is the offline simulator (no OPENAI_API_KEY, no CHAT_PROVIDERS). */
  readonly simulated: boolean
  private readonly entries: Entry[]
  private readonly byModel = new Map<string, Entry[]>()
  private readonly opts: RouterOptions
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>

  constructor (providers: RoutedProvider[], opts: RouterOptions) {
    this.opts = opts
    this.model = opts.defaultModel
    this.simulated = providers.length > 0 && providers.every((p) => p.simulated)
    this.sleep = opts.sleep ?? abortableSleep
    this.entries = providers.map((p) => {
      const breaker = new CircuitBreaker({
        failures: opts.breakerFailures,
        cooldownMs: opts.breakerCooldownMs,
        retryAfterCapMs: opts.retryAfterCapMs,
        onChange: (state) => {
          opts.metrics?.providerState(p.name, STATE_VALUE[state])
          opts.log[state === 'open' ? 'warn' : 'info']({ provider: p.name, state }, `LLM provider circuit ${state.replace('_', '-')}`)
        }
      })
      opts.metrics?.providerState(p.name, 0)
      return { ...p, breaker }
    })
    for (const e of this.entries) {
      for (const id of e.models) {
        const list = this.byModel.get(id) ?? []
        list.push(e)
        this.byModel.set(id, list)
      }
    }
  }

  /** One JSON completion of `model` (default: the default model), failing over as described in route(); `maxTokens`: a lower output cap for this call. */
  async complete (messages: PromptMessage[], signal?: AbortSignal, model: string = this.model, maxTokens?: number): Promise<RoutedOutcome> {
    return await this.route(model, signal, (client) => client.complete(messages, signal, model, maxTokens))
  }

  /** A streamed completion of `model`; `onDelta` only ever sees the text of the provider that answered. */
  async stream (messages: PromptMessage[], onDelta: (text: string) => void, signal?: AbortSignal, model: string = this.model): Promise<RoutedOutcome> {
    return await this.route(model, signal, (client) => client.stream(messages, onDelta, signal, model))
  }

  /**
   * The model's providers in the configured order, each once (skipping open circuits), then CHAT_LLM_MAX_RETRIES
   * more attempts from the first again after a short backoff (never again to one that timed out). An attempt that produced output ends the call
   * whatever happened (a cut stream is the caller's to charge: never asked twice); one that produced nothing and
   * failed for a reason of the provider's moves on. A 429 whose Retry-After is at most CHAT_LLM_RETRY_AFTER_MAX_MS
   * is waited out on the same provider once; a longer one moves on and opens that provider's circuit until then
   * (at most CHAT_LLM_RETRY_AFTER_CAP_MS; then one probe decides).
   * When no attempt could be made (every circuit open), 503 without calling anyone.
   */
  private async route (model: string, signal: AbortSignal | undefined, call: (client: LlmClient) => Promise<LlmOutcome>): Promise<RoutedOutcome> {
    const list = this.byModel.get(model)
    if (!list || list.length === 0) throw new ProblemError('validation_failed', `The model "${model}" is not available.`)
    const total = list.length + this.opts.maxRetries
    const waited = new Set<Entry>()
    // A provider that timed out is not asked again by this call: retries are for quick failures, and each timeout
    // costs CHAT_LLM_TIMEOUT_MS, so a call waits at most (its providers) × the timeout for hanging ones.
    const timedOut = new Set<Entry>()
    let last: { outcome: LlmOutcome, entry: Entry } | undefined
    let tried = 0
    for (let k = 0; k < total; k++) {
      const entry = list[k % list.length]
      if (k >= list.length && k % list.length === 0) await this.sleep(Math.min(250 * 2 ** (k / list.length - 1), 2000), signal)
      if (signal?.aborted) break
      if (timedOut.has(entry) || !entry.breaker.allow()) continue
      let outcome = await call(entry.client)
      tried++
      let failure = this.verdict(entry, outcome)
      // A short Retry-After is waited out on the same provider, once per call.
      if (failure?.retriable && failure.retryAfterMs !== undefined && failure.retryAfterMs <= this.opts.retryAfterMaxMs && !waited.has(entry) && !signal?.aborted) {
        waited.add(entry)
        this.opts.log.info({ provider: entry.name, model, retry_after_ms: failure.retryAfterMs }, 'LLM provider asked to wait; retrying it')
        await this.sleep(failure.retryAfterMs, signal)
        if (!signal?.aborted && entry.breaker.allow()) {
          outcome = await call(entry.client)
          tried++
          failure = this.verdict(entry, outcome)
        }
      }
      last = { outcome, entry }
      if (!failure || !failure.retriable) return this.routed(outcome, model, entry, tried)
      if (failure.reason === 'timeout') timedOut.add(entry)
      this.opts.metrics?.llmFailover({ provider: entry.name, model, reason: failure.reason })
      this.opts.log.warn({ provider: entry.name, model, reason: failure.reason, status: failure.status }, 'LLM provider failed before the first byte; trying the next one')
    }
    if (signal?.aborted) return { content: '', finished: false, clientAborted: true, model, provider: last?.entry.name, simulated: last?.entry.simulated ?? false, attempts: tried }
    if (!last) {
      return {
        content: '',
        finished: false,
        clientAborted: false,
        error: new ProblemError('service_unavailable', 'The language model cannot be reached; try again shortly.', { cause: new Error(`every provider of ${model} has an open circuit`) }),
        model,
        simulated: false,
        attempts: 0
      }
    }
    return this.routed(last.outcome, model, last.entry, tried)
  }

  /** Tells the provider's breaker how the attempt went; a Failure when it produced nothing and failed. */
  private verdict (entry: Entry, outcome: LlmOutcome): Failure | undefined {
    if (outcome.finished) {
      entry.breaker.success()
      return undefined
    }
    if (outcome.clientAborted) {
      // The client left: no verdict on the provider (if it had written something, it was up).
      if (outcome.content !== '') entry.breaker.success()
      else entry.breaker.release()
      return undefined
    }
    if (outcome.content !== '') {
      // Output, then an error: never retried (the caller charges what was produced), but the provider broke.
      entry.breaker.failure()
      this.opts.metrics?.providerFailure(entry.name, 'cut')
      return undefined
    }
    const failure = classifyFailure(outcome.error)
    this.opts.metrics?.providerFailure(entry.name, failure.reason)
    if (failure.retriable) entry.breaker.failure(failure.retryAfterMs !== undefined && failure.retryAfterMs > this.opts.retryAfterMaxMs ? failure.retryAfterMs : undefined)
    else entry.breaker.release()
    return failure
  }

  private routed (outcome: LlmOutcome, model: string, entry: Entry, tried: number): RoutedOutcome {
    return { ...outcome, model, provider: entry.name, simulated: entry.simulated, attempts: Math.max(0, tried - 1) }
  }
}
