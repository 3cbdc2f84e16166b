// Chat's domain metrics in /metrics: model calls (latency, errors, first token), providers (circuit, failures, failovers), the outbox backlog, settled and retried records.
import { sql, type Kysely } from 'kysely'
import { Counter, Gauge, Histogram, type Metric } from '@chat-platform/platform'
import type { Database } from './db/database.ts'

const LLM_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120]

/** How one model call ended: `ok`, `partial` (some output, then an error or the client left), or an error code with nothing generated. */
export type LlmCallOutcome = 'ok' | 'partial' | 'client_closed' | 'upstream_error' | 'upstream_timeout' | 'service_unavailable'

export interface ChatMetrics {
  /** Model calls by provider, model, mode (json/stream) and outcome; errors are the calls whose outcome is not ok. */
  llmCall: (labels: { provider: string, model: string, mode: 'json' | 'stream' }, outcome: LlmCallOutcome, seconds: number) => void
  /** Streams: from the request to the first content chunk. */
  llmFirstToken: (labels: { provider: string, model: string }, seconds: number) => void
  /** A provider's circuit: 0 closed, 1 half-open, 2 open. */
  providerState: (provider: string, state: 0 | 1 | 2) => void
  /** An attempt that failed (reason: connect, timeout, rate_limited, server_error, status_NNN, broken, cut). */
  providerFailure: (provider: string, reason: string) => void
  /** A call moved on from `provider` to the model's next one (or gave up), and why. */
  llmFailover: (labels: { provider: string, model: string, reason: string }) => void
  /** The sweeper settled an exchange its process left pending (`charged`: false when it had been recorded meanwhile). */
  pendingSettled: (charged: boolean) => void
  /** A record retried in the background: `started`, then `landed` or `gave_up`. */
  recordRetry: (what: string, outcome: 'started' | 'landed' | 'gave_up') => void
  /** Every metric above, for the app's registry (the outbox backlog is read from Postgres at scrape time). */
  all: Metric[]
}

export function createChatMetrics (opts: { db?: Kysely<Database> } = {}): ChatMetrics {
  const duration = new Histogram({
    name: 'chat_llm_call_duration_seconds',
    help: 'Model calls, from the request to the last byte, by provider, model, mode (json/stream) and outcome',
    labelNames: ['provider', 'model', 'mode', 'outcome'],
    buckets: LLM_BUCKETS,
    registers: []
  })
  const errors = new Counter({
    name: 'chat_llm_call_errors_total',
    help: 'Model calls that did not finish (partial, client_closed, upstream_error, upstream_timeout, service_unavailable), by provider, model and outcome',
    labelNames: ['provider', 'model', 'mode', 'outcome'],
    registers: []
  })
  const firstToken = new Histogram({
    name: 'chat_llm_first_token_seconds',
    help: 'Streamed model calls: from the request to the first content chunk, by provider and model',
    labelNames: ['provider', 'model'],
    buckets: LLM_BUCKETS,
    registers: []
  })
  const settled = new Counter({
    name: 'chat_pending_exchanges_settled_total',
    help: 'Exchanges left pending by a dead process that the sweeper settled (charged: false when a late record got there first)',
    labelNames: ['charged'],
    registers: []
  })
  const retries = new Counter({
    name: 'chat_record_retries_total',
    help: 'Records retried in the background after Postgres refused them (what: record reply / mark failed; outcome: started, landed, gave_up)',
    labelNames: ['what', 'outcome'],
    registers: []
  })
  const providerState = new Gauge({
    name: 'chat_llm_provider_state',
    help: 'Each LLM provider\'s circuit breaker in this process: 0 closed (healthy), 1 half-open (probing), 2 open (skipped until its cool-down ends)',
    labelNames: ['provider'],
    registers: []
  })
  const providerFailures = new Counter({
    name: 'chat_llm_provider_failures_total',
    help: 'Failed attempts per LLM provider and reason (connect, timeout, rate_limited, server_error, status_NNN, broken: nothing produced; cut: output, then an error)',
    labelNames: ['provider', 'reason'],
    registers: []
  })
  const failovers = new Counter({
    name: 'chat_llm_failovers_total',
    help: 'Calls that moved on from a provider that failed before the first byte, by that provider, model and reason',
    labelNames: ['provider', 'model', 'reason'],
    registers: []
  })
  const all: Metric[] = [duration, errors, firstToken, settled, retries, providerState, providerFailures, failovers]
  const { db } = opts
  if (db) {
    all.push(new Gauge({
      name: 'chat_outbox_backlog',
      help: 'Usage events in the outbox not yet published to JetStream (read at scrape time; the partial index on unpublished rows keeps it cheap)',
      registers: [],
      async collect () {
        try {
          const { rows } = await sql<{ n: number }>`select count(*)::int as n from outbox where published_at is null`.execute(db)
          this.set(rows[0].n)
        } catch {
          this.set(Number.NaN) // Postgres away: unknown, rather than a failed scrape.
        }
      }
    }))
  }
  return {
    llmCall (labels, outcome, seconds) {
      duration.observe({ ...labels, outcome }, seconds)
      if (outcome !== 'ok') errors.inc({ ...labels, outcome })
    },
    llmFirstToken (labels, seconds) { firstToken.observe(labels, seconds) },
    providerState (provider, state) { providerState.set({ provider }, state) },
    providerFailure (provider, reason) { providerFailures.inc({ provider, reason }) },
    llmFailover (labels) { failovers.inc(labels) },
    pendingSettled (charged) { settled.inc({ charged: String(charged) }) },
    recordRetry (what, outcome) { retries.inc({ what, outcome }) },
    all
  }
}
