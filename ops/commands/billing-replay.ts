// `pnpm ops billing:replay`: re-feeds CHAT_USAGE from a time or sequence through billing's own apply code.
import { DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream'
import Value from 'typebox/value'
import { namespaced, Subjects, UsageRecordedSchema, type UsageRecorded } from '@chat-platform/contracts'
import { applyUsageEvents } from '@chat-platform/billing/ledger.ts'
import { insertDeadLetters, type NewDeadLetter } from '@chat-platform/billing/db/repositories/dead-letters.ts'
import { selectProcessedEventIds } from '@chat-platform/billing/db/repositories/processed-events.ts'
import { writeBalanceCache } from '@chat-platform/billing/balance-cache.ts'
import { knownUsers, type KnownUsers } from '@chat-platform/billing/known-users.ts'
import { screenUsers } from '@chat-platform/billing/events/usage-recorded.consumer.ts'
import type { OpsContext } from '../context.ts'

export interface ReplayOptions { since?: Date, fromSeq?: number, until?: Date, dryRun?: boolean, batchSize?: number }
export interface ReplayCounts { read: number, applied: number, alreadyApplied: number, rejected: number, firstSeq: number | null, lastSeq: number | null }

export async function billingReplay (ctx: OpsContext, opts: ReplayOptions): Promise<ReplayCounts> {
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
  // As the live consumer: events of users auth does not know are set aside, never an account opened for them.
  const users = knownUsers(ctx.db(), { authUrl: ctx.config.AUTH_URL, enabled: ctx.config.BILLING_CHECK_USERS })
  for (let done = false; !done;) {
    const batch: JsMsg[] = []
    const msgs = await consumer.fetch({ max_messages: opts.batchSize ?? 200, expires: 2_000 })
    for await (const m of msgs) {
      if (m.seq > endSeq || (untilNanos !== undefined && BigInt(m.info.timestampNanos) >= untilNanos)) { done = true; break }
      batch.push(m)
      if (m.seq === endSeq || m.info.pending === 0) { done = true; break }
    }
    if (batch.length === 0) break
    await applyBatch(ctx, stream, batch, counts, opts.dryRun ?? false, users)
  }
  await consumer.delete().catch(() => {})
  return counts
}

async function applyBatch (ctx: OpsContext, stream: string, batch: JsMsg[], counts: ReplayCounts, dryRun: boolean, users: KnownUsers): Promise<void> {
  const valid: { m: JsMsg, event: UsageRecorded }[] = []
  const rejected: NewDeadLetter[] = []
  for (const m of batch) {
    counts.read++
    counts.firstSeq ??= m.seq
    counts.lastSeq = m.seq
    let data: unknown
    try { data = m.json() } catch { data = undefined }
    if (Value.Check(UsageRecordedSchema, data)) valid.push({ m, event: data })
    else rejected.push({ stream, stream_seq: m.seq, subject: m.subject, payload: m.string(), error: 'set aside by billing:replay: payload does not match the schema' })
  }
  const screened = await screenUsers(valid.map((v) => v.event), users)
  // A replay cannot wait for a redelivery: auth unreachable fails the run (exit 2, naming auth) before anything is written.
  const [unanswered] = screened.retry.values()
  if (unanswered !== undefined) throw new Error(`billing:replay stopped: ${unanswered}`)
  const events: UsageRecorded[] = []
  valid.forEach(({ m, event }, i) => {
    const aside = screened.setAside.get(i)
    if (aside === undefined) events.push(event)
    else rejected.push({ stream, stream_seq: m.seq, subject: m.subject, payload: m.string(), error: `set aside by billing:replay: ${aside}` })
  })
  counts.rejected += rejected.length
  let applied: Set<string>
  if (dryRun) {
    const known = await selectProcessedEventIds(ctx.db(), events.map((e) => e.event_id))
    applied = new Set(events.map((e) => e.event_id).filter((id) => !known.has(id)))
  } else {
    const rules = { signupBonus: ctx.config.SIGNUP_BONUS, prices: ctx.config.MODEL_PRICES }
    const result = await ctx.db().transaction().execute(async (trx) => {
      const r = await applyUsageEvents(trx, events, rules)
      await insertDeadLetters(trx, rejected)
      return r
    })
    await writeBalanceCache(ctx.redis(), result.balances, ctx.log)
    applied = new Set([...result.outcomes].filter(([, o]) => o === 'applied').map(([id]) => id))
  }
  // Counted per message: a second copy of an event inside the range is "already applied" like any repeat.
  for (const e of events) {
    if (applied.delete(e.event_id)) counts.applied++
    else counts.alreadyApplied++
  }
}
