// `pnpm ops billing:replay`: re-feeds CHAT_USAGE from a time or sequence through billing's own apply code.
import { DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream'
import { namespaced, Subjects, type UsageRecorded, type UsageRecordedSchema } from '@chat-platform/contracts'
import { batchSorter, setAsideRow, type EventHandler, type SortedBatch } from '@chat-platform/platform'
import { selectProcessedEventIds } from '../db/repositories/processed-events.ts'
import { knownUsers } from '../known-users.ts'
import { usageHandler } from '../events/usage-recorded.consumer.ts'
import type { BillingOpsContext } from './context.ts'

export interface ReplayOptions { since?: Date, fromSeq?: number, until?: Date, dryRun?: boolean, batchSize?: number }
export interface ReplayCounts { read: number, applied: number, alreadyApplied: number, rejected: number, firstSeq: number | null, lastSeq: number | null }

export async function billingReplay (ctx: BillingOpsContext, opts: ReplayOptions): Promise<ReplayCounts> {
  if ((opts.since === undefined) === (opts.fromSeq === undefined)) throw new Error('give exactly one of --since <ISO time> or --from-seq <n>')
  const nc = await ctx.nats()
  const ns = namespaced(ctx.config.EVENTS_NAMESPACE)
  const stream = ns.streams.CHAT_USAGE.name
  const counts: ReplayCounts = { read: 0, applied: 0, alreadyApplied: 0, rejected: 0, firstSeq: null, lastSeq: null }
  // The replay ends at the stream's last message when it starts: events arriving meanwhile go to the live consumer.
  const endSeq = (await (await jetstreamManager(nc)).streams.info(stream)).state.last_seq
  if (endSeq === 0 || (opts.fromSeq !== undefined && opts.fromSeq > endSeq)) return counts
  const consumer = await jetstream(nc).consumers.get(stream, {
    filter_subjects: ns.subject(Subjects.usageRecorded),
    ...(opts.fromSeq !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.fromSeq }
      : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since!.toISOString() })
  })
  const untilNanos = opts.until === undefined ? undefined : BigInt(opts.until.getTime()) * 1_000_000n
  // The live consumer's handler: the same validation, the same screen (events of users auth does not know are set
  // aside, never an account opened for them), the same transaction and Redis copy.
  const handler = usageHandler({
    books: { db: ctx.db(), redis: ctx.redis(), log: ctx.log },
    rules: { signupBonus: ctx.config.SIGNUP_BONUS, prices: ctx.config.MODEL_PRICES, bonusOn: ctx.config.SIGNUP_BONUS_ON },
    knownUsers: knownUsers(ctx.db(), { authUrl: ctx.config.AUTH_URL, enabled: ctx.config.BILLING_CHECK_USERS })
  })
  const sort = batchSorter(handler)
  for (let done = false; !done;) {
    const batch: JsMsg[] = []
    const msgs = await consumer.fetch({ max_messages: opts.batchSize ?? 200, expires: 2_000 })
    for await (const m of msgs) {
      if (m.seq > endSeq || (untilNanos !== undefined && BigInt(m.info.timestampNanos) >= untilNanos)) { done = true; break }
      batch.push(m)
      if (m.seq === endSeq || m.info.pending === 0) { done = true; break }
    }
    if (batch.length === 0) break
    await applyBatch(ctx, stream, batch, counts, opts.dryRun ?? false, handler, await sort(batch))
  }
  await consumer.delete().catch(() => {})
  return counts
}

async function applyBatch (ctx: BillingOpsContext, stream: string, batch: JsMsg[], counts: ReplayCounts, dryRun: boolean,
  handler: EventHandler<typeof UsageRecordedSchema>, { decoded, later }: SortedBatch<UsageRecorded>): Promise<void> {
  // A replay cannot wait for a redelivery: auth unreachable fails the run (exit 2, naming auth) before anything is written.
  if (later.length > 0) throw new Error(`billing:replay stopped: ${later[0][1]}`)
  for (const m of batch) {
    counts.read++
    counts.firstSeq ??= m.seq
    counts.lastSeq = m.seq
  }
  const events = decoded.flatMap((d) => d.event === undefined ? [] : [d.event])
  const rejected = decoded.filter((d) => d.event === undefined).map((d) => setAsideRow(stream, d, `set aside by billing:replay: ${d.error}`))
  counts.rejected += rejected.length
  let applied: Set<string>
  if (dryRun) {
    const known = await selectProcessedEventIds(ctx.db(), events.map((e) => e.event_id))
    applied = new Set(events.map((e) => e.event_id).filter((id) => !known.has(id)))
  } else {
    const outcomes = await handler.apply(events, rejected)
    applied = new Set([...outcomes].filter(([, o]) => o === 'applied').map(([id]) => id))
  }
  // Counted per message: a second copy of an event inside the range is "already applied" like any repeat.
  for (const e of events) {
    if (applied.delete(e.event_id)) counts.applied++
    else counts.alreadyApplied++
  }
}
