// Exchanges not yet settled: recording retried in-process while Postgres is away, and the sweeper that settles those whose process died.
import type { Kysely } from 'kysely'
import { namespaced, Subjects, type ModelPrices } from '@chat-platform/contracts'
import type { FastifyBaseLogger as Logger } from 'fastify'
import type { Database } from './db/database.ts'
import { settleStaleExchange } from './db/repositories/exchanges.ts'
import type { ChatMetrics } from './metrics.ts'
import { buildUsageEvent } from './usage-event.ts'

const FIRST_DELAY_MS = 100
const MAX_DELAY_MS = 5_000

/**
 * Retries writes that must land (a reply's charge after the model answered, or marking a failed exchange) with
 * backoff for at most `retryMs`; `close()` (shutdown) stops them. What is still pending then is the sweeper's.
 */
export class RecordRetries {
  private readonly ac = new AbortController()
  private readonly active = new Set<Promise<boolean>>()
  private readonly retryMs: number
  private readonly metrics?: ChatMetrics

  constructor (opts: { retryMs: number, metrics?: ChatMetrics }) {
    this.retryMs = opts.retryMs
    this.metrics = opts.metrics
  }

  get size (): number { return this.active.size }

  /** Resolves true once `write` succeeded, false when it gave up (time out or shutdown). Never rejects. */
  retry (what: string, write: () => Promise<void>, log: Logger): Promise<boolean> {
    this.metrics?.recordRetry(what, 'started')
    const run = this.run(what, write, log)
    this.active.add(run)
    run.then((landed) => this.metrics?.recordRetry(what, landed ? 'landed' : 'gave_up')).finally(() => this.active.delete(run)).catch(() => {})
    return run
  }

  private async run (what: string, write: () => Promise<void>, log: Logger): Promise<boolean> {
    const deadline = Date.now() + this.retryMs
    let delay = FIRST_DELAY_MS
    for (let attempt = 1; ; attempt++) {
      if (this.ac.signal.aborted || Date.now() + delay > deadline) {
        log.error({ what, attempts: attempt - 1 }, 'gave up retrying; the pending-exchange sweeper settles it')
        return false
      }
      await sleep(delay, this.ac.signal)
      if (this.ac.signal.aborted) continue
      try {
        await write()
        log.warn({ what, attempts: attempt }, 'recorded after retrying')
        return true
      } catch (err) {
        if (attempt === 1 || attempt % 10 === 0) log.warn({ what, attempt, err: (err as Error).message }, 'still cannot record; retrying')
        delay = Math.min(delay * 2, MAX_DELAY_MS)
      }
    }
  }

  async close (): Promise<void> {
    this.ac.abort()
    await Promise.allSettled([...this.active])
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done () {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

export interface SweepOptions {
  staleMs: number
  prices: ModelPrices
  defaultModel: string
  eventsNamespace: string
  log: Logger
  metrics?: ChatMetrics
  /** This replica's LLM is the offline simulator (so was the dead one's: replicas share their configuration). */
  simulated?: boolean
}

/**
 * Settles every exchange left pending with a lease expired `staleMs` ago: the process that ran it died (or
 * gave up recording), and the output may have reached the client. What is known is charged, estimated: the
 * prompt tokens counted before the call, completion 0 (what was streamed died with the process). One
 * transaction per exchange; replicas sweeping at once skip each other's rows. Returns how many it charged.
 */
export async function sweepStaleExchanges (db: Kysely<Database>, opts: SweepOptions): Promise<number> {
  const subject = namespaced(opts.eventsNamespace).subject(Subjects.usageRecorded)
  let charged = 0
  for (;;) {
    const settled = await settleStaleExchange(db, opts.staleMs, (x) => {
      const event = buildUsageEvent({ user_id: x.user_id, session_id: x.session_id, message_id: x.reply_id, model: x.model ?? opts.defaultModel, prompt_tokens: x.prompt_tokens, completion_tokens: 0, usage_source: 'estimated', simulated: opts.simulated }, opts.prices)
      return { event, subject }
    })
    if (!settled) return charged
    if (settled.charged) charged++
    opts.metrics?.pendingSettled(settled.charged)
    opts.log.warn({ message_id: settled.exchange.id, user_id: settled.exchange.user_id, prompt_tokens: settled.exchange.prompt_tokens, charged: settled.charged }, 'settled an exchange its process left pending')
  }
}
