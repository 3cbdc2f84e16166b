// A durable JetStream pull consumer shared by every billing replica: events are applied in batches, each
// batch in one Postgres transaction that also records the event ids, and acked only after the commit.
import type { NatsConnection } from '@nats-io/transport-node'
import { nanos } from '@nats-io/nats-core'
import { AckPolicy, DeliverPolicy, JetStreamApiError, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import type { TSchema, Static } from 'typebox'
import { Compile } from 'typebox/compile'
import type { Kysely } from 'kysely'
import type { Logger } from 'pino'
import type { Database } from '../db/database.ts'
import { insertDeadLetters, type NewDeadLetter } from '../db/repositories/dead-letters.ts'
import type { ApplyResult, Balances } from '../ledger.ts'

type Db = Kysely<Database>

export interface ConsumerOptions<S extends TSchema> {
  nc: NatsConnection
  db: Db
  log: Logger
  stream: string
  durable: string
  filterSubject: string
  schema: S
  /** Applies schema-valid events inside the given transaction. */
  apply: (trx: Db, events: Static<S>[]) => Promise<ApplyResult>
  /**
   * Looks at the schema-valid events of a batch before they are applied (by index): those in `setAside` are stored
   * as dead letters with the reason (kept, logged, counted) instead; those in `retry` are left for a redelivery.
   */
  screen?: (events: Static<S>[]) => Promise<Screened>
  /** Called after each commit with the balances it changed (the Redis copy). */
  onCommitted?: (balances: Balances) => Promise<void>
  ackWaitMs: number
  batchSize: number
  /** Batches applied at the same time, each in its own transaction (default 1). */
  concurrency?: number
  /** A short batch waits this long for more events before it is applied (default 0). */
  lingerMs?: number
  retryDelayMs: number
  /** Test seam: runs after the commit and before the acks (a crash here must not double-apply). */
  beforeAck?: (msgs: JsMsg[]) => Promise<void>
}

export interface ConsumerStats { applied: number, duplicates: number, deadLettered: number, retried: number, batches: number, batchFallbacks: number, peakInFlight: number }

// SQLSTATE classes 22 (data exception) and 23 (integrity violation) will fail the same way every time.
const isPermanentDbError = (err: unknown) => /^2[23]/.test(String((err as { code?: string })?.code ?? ''))

interface Decoded<E> { msg: JsMsg, event?: E, error?: string }
export interface Screened { setAside: Map<number, string>, retry: Map<number, string> }

export class EventConsumer<S extends TSchema> {
  readonly stats: ConsumerStats = { applied: 0, duplicates: 0, deadLettered: 0, retried: 0, batches: 0, batchFallbacks: 0, peakInFlight: 0 }
  private readonly opts: ConsumerOptions<S>
  private messages?: ConsumerMessages
  private queue: JsMsg[] = []
  private wake?: () => void
  private filled?: () => void
  private lastBatch = 0
  private stopped = true
  private pulling?: Promise<void>
  private working?: Promise<void>
  private readonly inFlight = new Set<Promise<void>>()

  // Compiled once: the interpreted check was a large share of billing's CPU per event (bench profile).
  private readonly validator: { Check: (value: unknown) => boolean, Errors: (value: unknown) => { instancePath?: string, message?: string }[] }
  constructor (opts: ConsumerOptions<S>) {
    this.opts = opts
    this.validator = Compile(opts.schema)
  }

  /** Creates (or updates) the durable consumer; every replica binds to the same one. */
  async ensure (): Promise<void> {
    const { nc, stream, durable } = this.opts
    const jsm = await jetstreamManager(nc)
    // Room for the buffers of up to eight replicas (each holds one batch more than it applies at once).
    const settings = { ack_wait: nanos(this.opts.ackWaitMs), max_ack_pending: Math.max(1000, this.opts.batchSize * (this.concurrency + 1) * 8) }
    try {
      await jsm.consumers.info(stream, durable)
      await jsm.consumers.update(stream, durable, settings)
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || !/not found/i.test(err.message)) throw err
      try {
        await jsm.consumers.add(stream, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          filter_subject: this.opts.filterSubject,
          // Redeliver until acked: poison messages are set aside by us, never dropped by a delivery cap.
          max_deliver: -1,
          ...settings
        })
      } catch (addErr) {
        if (!(addErr instanceof JetStreamApiError) || !/already|exists/i.test(addErr.message)) throw addErr
      }
    }
  }

  async start (): Promise<void> {
    await this.ensure()
    this.stopped = false
    this.pulling = this.pull()
    this.working = this.work()
  }

  private async pull (): Promise<void> {
    const js = jetstream(this.opts.nc)
    while (!this.stopped) {
      try {
        const consumer = await js.consumers.get(this.opts.stream, this.opts.durable)
        // The prefetch buffer is counted against ack_wait; keep it small (one batch more than are applied at once).
        const messages = await consumer.consume({ max_messages: this.opts.batchSize * (this.concurrency + 1) })
        this.messages = messages
        if (this.stopped) { await messages.close(); break }
        for await (const m of messages) {
          this.queue.push(m)
          this.wake?.()
          if (this.queue.length >= this.opts.batchSize) this.filled?.()
        }
      } catch (err) {
        if (this.stopped) break
        this.opts.log.warn({ err: (err as Error).message, consumer: this.opts.durable }, 'consumer stopped; resubscribing')
        await new Promise((resolve) => setTimeout(resolve, 1000))
      }
    }
  }

  private get concurrency (): number { return Math.max(1, this.opts.concurrency ?? 1) }

  private async work (): Promise<void> {
    while (!this.stopped) {
      if (this.queue.length === 0) {
        await new Promise<void>((resolve) => { this.wake = resolve })
        this.wake = undefined
        continue
      }
      // Another batch starts beside a running one only when a full batch is waiting (a backlog): a trickle keeps
      // gathering into the next batch meanwhile, as with one batch at a time.
      if (this.inFlight.size >= this.concurrency) {
        await Promise.race(this.inFlight)
        continue
      }
      if (this.inFlight.size > 0 && this.queue.length < this.opts.batchSize) {
        await Promise.race([...this.inFlight, new Promise<void>((resolve) => { this.filled = resolve })])
        this.filled = undefined
        continue
      }
      const linger = this.opts.lingerMs ?? 0
      if (linger > 0 && this.queue.length < this.opts.batchSize && this.lastBatch < this.opts.batchSize / 2) {
        // A trickle (the last batch was short): events arriving close together go in one transaction. A backlog
        // never waits (its batches are full); a full batch or stop() ends the wait early.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, linger)
          function done () { clearTimeout(timer); resolve() }
          this.filled = done
        })
        this.filled = undefined
      }
      const batch = this.queue.splice(0, this.opts.batchSize)
      this.lastBatch = batch.length
      // Batches overlap (one transaction each): event ids are claimed and accounts locked in sorted order, so two
      // batches holding the same events or users wait for each other instead of deadlocking.
      const running: Promise<void> = this.processBatch(batch).catch((err) => {
        this.opts.log.error({ err, consumer: this.opts.durable }, 'batch failed; redelivering later')
        for (const m of batch) this.reply(() => m.nak(this.opts.retryDelayMs))
      }).finally(() => this.inFlight.delete(running))
      this.inFlight.add(running)
      this.stats.peakInFlight = Math.max(this.stats.peakInFlight, this.inFlight.size)
    }
    await Promise.all(this.inFlight)
  }

  private decode (msg: JsMsg): Decoded<Static<S>> {
    let data: unknown
    try { data = JSON.parse(msg.string()) } catch { return { msg, error: 'payload is not JSON' } }
    if (!this.validator.Check(data)) {
      const e = this.validator.Errors(data)[0]
      return { msg, error: `payload does not match the schema: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}` }
    }
    return { msg, event: data as Static<S> }
  }

  private deadLetter (d: Decoded<unknown>, error = d.error!): NewDeadLetter {
    return { stream: this.opts.stream, stream_seq: d.msg.seq, subject: d.msg.subject, payload: d.msg.string(), error: error.slice(0, 1000) }
  }

  /** One transaction for the whole batch; if it fails, each event on its own so one bad event blocks nothing. */
  async processBatch (batch: JsMsg[]): Promise<void> {
    const { decoded, later } = await this.screen(batch.map((m) => this.decode(m)))
    const good = decoded.filter((d) => d.event !== undefined)
    const bad = decoded.filter((d) => d.event === undefined)
    this.stats.batches++
    let result: ApplyResult
    try {
      result = await this.opts.db.transaction().execute(async (trx) => {
        const r = await this.opts.apply(trx, good.map((d) => d.event!))
        await insertDeadLetters(trx, bad.map((d) => this.deadLetter(d)))
        return r
      })
    } catch (err) {
      if (batch.length === 1) return await this.fail(decoded[0], err)
      this.stats.batchFallbacks++
      this.opts.log.warn({ err: (err as Error).message, size: batch.length }, 'batch failed; applying one by one')
      for (const m of batch) await this.processBatch([m])
      return
    }
    await this.afterCommit(decoded, result)
    for (const [d, reason] of later) {
      this.stats.retried++
      this.opts.log.warn({ stream_seq: d.msg.seq, reason }, 'event held back; redelivering later')
      this.reply(() => d.msg.nak(this.opts.retryDelayMs))
    }
  }

  /** Runs the screen: events it sets aside become dead letters (an error, no event); those it holds back wait. */
  private async screen (all: Decoded<Static<S>>[]): Promise<{ decoded: Decoded<Static<S>>[], later: [Decoded<Static<S>>, string][] }> {
    const candidates = all.filter((d) => d.event !== undefined)
    if (!this.opts.screen || candidates.length === 0) return { decoded: all, later: [] }
    const verdict = await this.opts.screen(candidates.map((d) => d.event!))
    const later: [Decoded<Static<S>>, string][] = []
    candidates.forEach((d, i) => {
      const aside = verdict.setAside.get(i)
      const retry = verdict.retry.get(i)
      if (aside !== undefined) {
        d.error = aside
        d.event = undefined
      } else if (retry !== undefined) {
        later.push([d, retry])
      }
    })
    const held = new Set(later.map(([d]) => d))
    return { decoded: all.filter((d) => !held.has(d)), later }
  }

  private async afterCommit (decoded: Decoded<Static<S>>[], result: ApplyResult): Promise<void> {
    await this.opts.onCommitted?.(result.balances)
    await this.opts.beforeAck?.(decoded.map((d) => d.msg))
    // A batch may hold the same event twice (redelivered, or published again under another msg id): it was
    // applied once, so only its first copy counts as applied.
    const counted = new Set<string>()
    for (const d of decoded) {
      if (d.event === undefined) {
        this.stats.deadLettered++
        this.opts.log.warn({ stream_seq: d.msg.seq, subject: d.msg.subject, error: d.error }, 'event set aside')
        // term() without a reason: a reason needs nats-server 2.11.
        this.reply(() => d.msg.term())
        continue
      }
      const id = (d.event as { event_id: string }).event_id
      if (result.outcomes.get(id) === 'applied' && !counted.has(id)) {
        counted.add(id)
        this.stats.applied++
      } else {
        this.stats.duplicates++
      }
      this.reply(() => d.msg.ack())
    }
  }

  private async fail (d: Decoded<Static<S>>, err: unknown): Promise<void> {
    if (d.event !== undefined && isPermanentDbError(err)) {
      this.opts.log.error({ err, stream_seq: d.msg.seq }, 'event can never be applied; set aside')
      try {
        await insertDeadLetters(this.opts.db, [this.deadLetter(d, `rejected by the database: ${(err as Error).message}`)])
        this.stats.deadLettered++
        this.reply(() => d.msg.term())
        return
      } catch { /* the database is away after all: retry below */ }
    }
    this.stats.retried++
    this.opts.log.warn({ err: (err as Error).message, stream_seq: d.msg.seq }, 'event not applied; redelivering later')
    this.reply(() => d.msg.nak(this.opts.retryDelayMs))
  }

  /** An ack that cannot be sent (connection gone) is fine: the message is redelivered and found applied. */
  private reply (fn: () => void): void {
    try { fn() } catch (err) { this.opts.log.warn({ err: (err as Error).message, consumer: this.opts.durable }, 'could not answer a message') }
  }

  /** Stops pulling, finishes the batches in flight, and hands back what was buffered (nak) to other replicas. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    await this.messages?.close().catch(() => {})
    this.wake?.()
    this.filled?.()
    await this.working
    await this.pulling
    for (const m of this.queue.splice(0)) this.reply(() => m.nak())
  }
}
