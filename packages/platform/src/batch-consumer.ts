// A durable JetStream pull consumer that applies events in batches through a service's handler, acking after the commit.
import type { NatsConnection } from '@nats-io/transport-node'
import { nanos, TimeoutError } from '@nats-io/nats-core'
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import type { TSchema, Static } from 'typebox'
import { Compile } from 'typebox/compile'
import type { Logger } from 'pino'

export type ApplyOutcome = 'applied' | 'duplicate'

/** An event set aside (malformed, refused for good, or rejected by the screen): what the service keeps of it. */
export interface SetAside { stream: string, stream_seq: number, subject: string, payload: string, error: string }

/** The screen's verdict on a batch's valid events, by index: set aside (with the reason), or left for a redelivery. */
export interface Screened { setAside: Map<number, string>, retry: Map<number, string> }

/** What a service does with one subject's events. Everything else (pulling, batching, acks) is the consumer's. */
export interface EventHandler<S extends TSchema> {
  /** The event's schema (contracts); a payload that fails it is set aside. */
  schema: S
  /** Looks at a batch's valid events before they are applied (optional). */
  screen?: (events: Static<S>[]) => Promise<Screened>
  /**
   * Applies the valid events and stores the set-aside ones, in one transaction (so the acks that follow cover
   * both); returns the outcome of each event id. Throws when nothing was committed.
   */
  apply: (events: Static<S>[], setAside: SetAside[]) => Promise<Map<string, ApplyOutcome>>
  /** Stores set-aside events on their own (an event the database refuses for good). */
  setAside: (rows: SetAside[]) => Promise<void>
}

/** A message of a batch: its event when valid, or why it is set aside. */
export interface Decoded<E> { msg: JsMsg, event?: E, error?: string }
export interface SortedBatch<E> {
  /** In delivery order: valid events (`event`) and set-aside ones (`error`). */
  decoded: Decoded<E>[]
  /** Held back by the screen, with the reason: to be redelivered. */
  later: [Decoded<E>, string][]
}

/**
 * The one decode → validate → screen path of a handler: the live consumer and any replay of the stream sort
 * messages with it. The schema is compiled once (the interpreted check was a large share of CPU per event).
 */
export function batchSorter<S extends TSchema> (handler: Pick<EventHandler<S>, 'schema' | 'screen'>): (msgs: JsMsg[]) => Promise<SortedBatch<Static<S>>> {
  const validator = Compile(handler.schema)
  const decode = (msg: JsMsg): Decoded<Static<S>> => {
    let data: unknown
    try { data = JSON.parse(msg.string()) } catch { return { msg, error: 'payload is not JSON' } }
    if (!validator.Check(data)) {
      const e = validator.Errors(data)[0] as { instancePath?: string, message?: string } | undefined
      return { msg, error: `payload does not match the schema: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}` }
    }
    return { msg, event: data as Static<S> }
  }
  return async (msgs) => {
    const all = msgs.map(decode)
    const candidates = all.filter((d) => d.event !== undefined)
    if (!handler.screen || candidates.length === 0) return { decoded: all, later: [] }
    const verdict = await handler.screen(candidates.map((d) => d.event!))
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
}

/** The record kept of a set-aside message. */
export function setAsideRow (stream: string, d: Decoded<unknown>, error = d.error ?? 'set aside'): SetAside {
  return { stream, stream_seq: d.msg.seq, subject: d.msg.subject, payload: d.msg.string(), error: error.slice(0, 1000) }
}

export interface BatchConsumerOptions<S extends TSchema> {
  nc: NatsConnection
  log: Logger
  stream: string
  durable: string
  filterSubject: string
  handler: EventHandler<S>
  ackWaitMs: number
  batchSize: number
  /** Batches applied at the same time, each in its own transaction (default 1). */
  concurrency?: number
  /** A short batch waits this long for more events before it is applied (default 0). */
  lingerMs?: number
  retryDelayMs: number
  /** How often a consumer whose stream does not exist yet looks again (default 1000 ms). */
  streamWaitMs?: number
  /** Errors that will fail the same way every time (default: SQLSTATE classes 22 and 23). */
  isPermanent?: (err: unknown) => boolean
  /** Test seam: runs after the commit and before the acks (a crash here must not double-apply). */
  beforeAck?: (msgs: JsMsg[]) => Promise<void>
}

export interface ConsumerStats { applied: number, duplicates: number, deadLettered: number, retried: number, batches: number, batchFallbacks: number, peakInFlight: number }

// SQLSTATE classes 22 (data exception) and 23 (integrity violation) will fail the same way every time.
const isPermanentDbError = (err: unknown) => /^2[23]/.test(String((err as { code?: string })?.code ?? ''))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A durable pull consumer shared by every replica of a service: each batch is applied by the handler in one
 * transaction and acked only after it committed; set-aside messages are `term()`ed after theirs. The consumer
 * creates its durable, never the stream: the stream's producer owns it. Until the stream exists the consumer
 * waits (logged, `ready()` failing), then binds and consumes.
 */
export class BatchConsumer<S extends TSchema> {
  readonly stats: ConsumerStats = { applied: 0, duplicates: 0, deadLettered: 0, retried: 0, batches: 0, batchFallbacks: 0, peakInFlight: 0 }
  private readonly opts: BatchConsumerOptions<S>
  private readonly sort: (msgs: JsMsg[]) => Promise<SortedBatch<Static<S>>>
  private messages?: ConsumerMessages
  private queue: JsMsg[] = []
  private wake?: () => void
  private filled?: () => void
  private lastBatch = 0
  private stopped = true
  private waiting = false
  private waited?: Promise<void>
  private pulling?: Promise<void>
  private working?: Promise<void>
  private readonly inFlight = new Set<Promise<void>>()

  constructor (opts: BatchConsumerOptions<S>) {
    this.opts = opts
    this.sort = batchSorter(opts.handler)
  }

  get name (): string { return this.opts.durable }

  /**
   * Creates (or updates) the durable consumer; every replica binds to the same one. False when the stream does
   * not exist yet. A clustered nats-server 2.9 may leave a create unanswered when replicas boot together: a
   * timed-out call is retried, and the next attempt finds the consumer and updates it.
   */
  async ensure (attempts = 6): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.ensureOnce()
      } catch (err) {
        if (!(err instanceof TimeoutError) || attempt >= attempts) throw err
        await sleep(250 * attempt)
      }
    }
  }

  private async ensureOnce (): Promise<boolean> {
    const { nc, stream, durable } = this.opts
    const jsm = await jetstreamManager(nc)
    // Room for the buffers of up to eight replicas (each holds one batch more than it applies at once).
    const settings = { ack_wait: nanos(this.opts.ackWaitMs), max_ack_pending: Math.max(1000, this.opts.batchSize * (this.concurrency + 1) * 8) }
    try {
      await jsm.consumers.info(stream, durable)
      await jsm.consumers.update(stream, durable, settings)
      return true
    } catch (err) {
      if (isStreamMissing(err)) return false
      if (!(err instanceof JetStreamApiError) || !/not found/i.test(err.message)) throw err
    }
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
      if (isStreamMissing(addErr)) return false
      // Another replica created it in between: fine.
      if (!(addErr instanceof JetStreamApiError) || !/already|exists/i.test(addErr.message)) throw addErr
    }
    return true
  }

  /**
   * Binds the durable and starts consuming. A stream that does not exist yet (this service booted before the
   * stream's producer) is waited for in the background; other errors throw.
   */
  async start (): Promise<void> {
    if (!this.stopped) return
    this.stopped = false
    if (await this.ensure()) return this.run()
    this.waiting = true
    this.opts.log.warn({ stream: this.opts.stream, consumer: this.opts.durable }, 'stream does not exist yet (its producer creates it); waiting for it')
    this.waited = this.waitForStream()
  }

  private async waitForStream (): Promise<void> {
    for (let attempt = 1; !this.stopped; attempt++) {
      await sleep(this.opts.streamWaitMs ?? 1000)
      if (this.stopped) return
      try {
        if (await this.ensure()) {
          this.waiting = false
          if (this.stopped) return
          this.opts.log.info({ stream: this.opts.stream, consumer: this.opts.durable }, 'stream found; consuming')
          this.run()
          return
        }
        if (attempt % 30 === 0) this.opts.log.warn({ stream: this.opts.stream, consumer: this.opts.durable, attempt }, 'still waiting for the stream')
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message, stream: this.opts.stream, consumer: this.opts.durable }, 'could not bind the consumer; trying again')
      }
    }
  }

  /** Readiness: fails while the consumer waits for its stream. */
  async ready (): Promise<void> {
    if (this.waiting) throw new Error(`consumer ${this.opts.durable} waits for stream ${this.opts.stream} (created by its producer)`)
  }

  private run (): void {
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
        await sleep(1000)
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
      // Batches overlap (one transaction each): the handler claims event ids and locks rows in a fixed order, so
      // two batches holding the same events wait for each other instead of deadlocking.
      const running: Promise<void> = this.processBatch(batch).catch((err) => {
        this.opts.log.error({ err, consumer: this.opts.durable }, 'batch failed; redelivering later')
        for (const m of batch) this.reply(() => m.nak(this.opts.retryDelayMs))
      }).finally(() => this.inFlight.delete(running))
      this.inFlight.add(running)
      this.stats.peakInFlight = Math.max(this.stats.peakInFlight, this.inFlight.size)
    }
    await Promise.all(this.inFlight)
  }

  /** One transaction for the whole batch; if it fails, each event on its own so one bad event blocks nothing. */
  async processBatch (batch: JsMsg[]): Promise<void> {
    const { decoded, later } = await this.sort(batch)
    const good = decoded.filter((d) => d.event !== undefined)
    const bad = decoded.filter((d) => d.event === undefined)
    this.stats.batches++
    let outcomes: Map<string, ApplyOutcome>
    try {
      outcomes = await this.opts.handler.apply(good.map((d) => d.event!), bad.map((d) => setAsideRow(this.opts.stream, d)))
    } catch (err) {
      if (batch.length === 1) return await this.fail(decoded[0] ?? later[0][0], err)
      this.stats.batchFallbacks++
      this.opts.log.warn({ err: (err as Error).message, size: batch.length }, 'batch failed; applying one by one')
      for (const m of batch) await this.processBatch([m])
      return
    }
    await this.afterCommit(decoded, outcomes)
    for (const [d, reason] of later) {
      this.stats.retried++
      this.opts.log.warn({ stream_seq: d.msg.seq, reason }, 'event held back; redelivering later')
      this.reply(() => d.msg.nak(this.opts.retryDelayMs))
    }
  }

  private async afterCommit (decoded: Decoded<Static<S>>[], outcomes: Map<string, ApplyOutcome>): Promise<void> {
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
      if (outcomes.get(id) === 'applied' && !counted.has(id)) {
        counted.add(id)
        this.stats.applied++
      } else {
        this.stats.duplicates++
      }
      this.reply(() => d.msg.ack())
    }
  }

  private async fail (d: Decoded<Static<S>>, err: unknown): Promise<void> {
    if (d.event !== undefined && (this.opts.isPermanent ?? isPermanentDbError)(err)) {
      this.opts.log.error({ err, stream_seq: d.msg.seq }, 'event can never be applied; set aside')
      try {
        await this.opts.handler.setAside([setAsideRow(this.opts.stream, d, `rejected by the database: ${(err as Error).message}`)])
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

  /** Stops pulling (or waiting for the stream), finishes the batches in flight, and hands back what was buffered (nak) to other replicas. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    await this.waited
    this.waiting = false
    await this.messages?.close().catch(() => {})
    this.wake?.()
    this.filled?.()
    await this.working
    await this.pulling
    for (const m of this.queue.splice(0)) this.reply(() => m.nak())
  }
}

function isStreamMissing (err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound
}
