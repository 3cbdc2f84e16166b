// Usage pipeline: chat.usage.recorded events published to JetStream → applied by billing, against a raw
// baseline doing the same set-based SQL with plain pg; then publish→commit latency at a steady rate.
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import pg from 'pg'
import { connect } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { namespaced, Subjects, type UsageRecorded } from '@chat-platform/contracts'
import type { BenchContext } from '../context.ts'
import { round, sleep, summarize } from '../stats.ts'
import { cpuMeter } from '../procs.ts'

// Users far above anything auth hands out in this run, so counts are this section's alone.
export const USAGE_USER_BASE = 9_000_000

function makeEvents (n: number, users: number, seed = 1): UsageRecorded[] {
  let x = seed
  const rnd = () => { x = (x * 1103515245 + 12345) & 0x7fffffff; return x / 0x7fffffff }
  const occurred = new Date().toISOString()
  return Array.from({ length: n }, (_, i) => ({
    event_id: randomUUID(),
    occurred_at: occurred,
    user_id: USAGE_USER_BASE + 1 + Math.floor(rnd() * users),
    session_id: 1 + (i % 5000),
    message_id: 1 + i,
    model: 'gpt-4o-mini',
    prompt_tokens: 20 + Math.floor(rnd() * 2000),
    completion_tokens: 10 + Math.floor(rnd() * 800),
    usage_source: 'provider'
  }))
}

async function countApplied (db: pg.Pool, users: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from billing.processed_events where user_id between $1 and $2', [USAGE_USER_BASE + 1, USAGE_USER_BASE + users])
  return rows[0].n
}

// ---- the raw baseline: billing's statements, in the same order, issued with plain pg on a scratch schema ----

const RAW = 'bench_raw'

async function createRawSchema (db: pg.Pool): Promise<void> {
  await db.query(`drop schema if exists ${RAW} cascade`)
  await db.query(`create schema ${RAW}`)
  for (const t of ['accounts', 'transactions', 'processed_events']) await db.query(`create table ${RAW}.${t} (like billing.${t} including all)`)
  await db.query(`alter table ${RAW}.transactions add foreign key (user_id) references ${RAW}.accounts (user_id)`)
}

const description = (e: UsageRecorded) => `对话消耗 · ${e.model} · 输入 ${e.prompt_tokens} + 输出 ${e.completion_tokens}`

async function rawApplyBatch (c: pg.PoolClient, events: UsageRecorded[], signupBonus: number): Promise<void> {
  const amount = (e: UsageRecorded) => e.prompt_tokens + e.completion_tokens
  await c.query('begin')
  try {
    const claimed = await c.query<{ event_id: string }>(
      `insert into ${RAW}.processed_events (event_id, subject, user_id, occurred_at, amount)
       select * from unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[], $5::bigint[])
       on conflict (event_id) do nothing returning event_id`,
      [events.map((e) => e.event_id), events.map(() => Subjects.usageRecorded), events.map((e) => e.user_id), events.map((e) => e.occurred_at), events.map(amount)])
    const fresh = new Set(claimed.rows.map((r) => r.event_id))
    const todo = events.filter((e) => fresh.has(e.event_id))
    const users = [...new Set(todo.map((e) => e.user_id))].sort((a, b) => a - b)
    const opened = await c.query<{ user_id: string }>(
      `insert into ${RAW}.accounts (user_id, balance) select u, 0 from unnest($1::bigint[]) as u on conflict (user_id) do nothing returning user_id`, [users])
    const rows: { user_id: number, change: number, kind: string, description: string, source_id: string, e?: UsageRecorded }[] = []
    for (const u of opened.rows.map((r) => Number(r.user_id)).sort((a, b) => a - b)) rows.push({ user_id: u, change: signupBonus, kind: 'signup_bonus', description: '注册赠送', source_id: String(u) })
    for (const e of todo) rows.push({ user_id: e.user_id, change: -amount(e), kind: 'usage', description: description(e), source_id: e.event_id, e })
    const per = new Map<number, { delta: number, n: number }>()
    for (const r of rows) { const p = per.get(r.user_id) ?? { delta: 0, n: 0 }; p.delta += r.change; p.n++; per.set(r.user_id, p) }
    const changed = [...per.keys()].sort((a, b) => a - b)
    if (changed.length > 1) await c.query(`select user_id from ${RAW}.accounts where user_id = any($1::bigint[]) order by user_id for update`, [changed])
    const upd = await c.query<{ user_id: string, balance: string }>(
      `update ${RAW}.accounts a set balance = a.balance + d.delta, version = a.version + d.n, updated_at = now()
       from unnest($1::bigint[], $2::bigint[], $3::bigint[]) as d(user_id, delta, n) where a.user_id = d.user_id
       returning a.user_id, a.balance`,
      [changed, changed.map((u) => per.get(u)!.delta), changed.map((u) => per.get(u)!.n)])
    const running = new Map(upd.rows.map((r) => [Number(r.user_id), Number(r.balance) - per.get(Number(r.user_id))!.delta]))
    const after = rows.map((r) => { const b = running.get(r.user_id)! + r.change; running.set(r.user_id, b); return b })
    await c.query(
      `insert into ${RAW}.transactions (user_id, change_amount, balance_after, kind, description, source_id, event_id,
         model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source)
       select user_id, change_amount, balance_after, kind, description, source_id, event_id,
         model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source
       from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::uuid[],
         $8::text[], $9::integer[], $10::integer[], $11::numeric[], $12::numeric[], $13::text[])
         with ordinality as r(user_id, change_amount, balance_after, kind, description, source_id, event_id,
           model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source, ord)
       order by ord`,
      [rows.map((r) => r.user_id), rows.map((r) => r.change), after, rows.map((r) => r.kind), rows.map((r) => r.description), rows.map((r) => r.source_id),
        rows.map((r) => r.e?.event_id ?? null), rows.map((r) => r.e?.model ?? null), rows.map((r) => r.e?.prompt_tokens ?? null), rows.map((r) => r.e?.completion_tokens ?? null),
        rows.map((r) => (r.e ? 1 : null)), rows.map((r) => (r.e ? 1 : null)), rows.map((r) => r.e?.usage_source ?? null)])
    await c.query('commit')
  } catch (err) {
    await c.query('rollback')
    throw err
  }
}

/** Applies `events` in batches, `concurrency` transactions at a time (a deadlock retries the batch). */
async function rawBaseline (db: pg.Pool, events: UsageRecorded[], batchSize: number, concurrency: number, signupBonus: number): Promise<number> {
  await createRawSchema(db)
  const batches: UsageRecorded[][] = []
  for (let i = 0; i < events.length; i += batchSize) batches.push(events.slice(i, i + batchSize))
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    const c = await db.connect()
    try {
      while (next < batches.length) {
        const batch = batches[next++]
        for (;;) {
          try { await rawApplyBatch(c, batch, signupBonus); break } catch (err) { if ((err as { code?: string }).code !== '40P01') throw err }
        }
      }
    } finally { c.release() }
  }))
  const seconds = (performance.now() - t0) / 1000
  await db.query(`drop schema ${RAW} cascade`)
  return events.length / seconds
}

export async function usageSection (ctx: BenchContext): Promise<void> {
  const u = ctx.profile.usage
  const { system } = ctx
  const ns = namespaced(system.env.EVENTS_NAMESPACE)
  const subject = ns.subject(Subjects.usageRecorded)
  const db = new pg.Pool({ connectionString: system.databaseUrl, max: Math.max(...u.rawConcurrency) + 2 })
  const nc = await connect({ servers: system.env.NATS_URL })
  const js = jetstream(nc)
  const signupBonus = Number(system.env.SIGNUP_BONUS ?? 1000)
  try {
    // 1. Throughput: publish everything (256 publishes in flight), time until billing has applied the last one.
    const events = makeEvents(u.events, u.users)
    const payloads = events.map((e) => JSON.stringify(e))
    const before = await countApplied(db, u.users)
    ctx.log(`usage: publishing ${u.events} events for ${u.users} users`)
    const meter = cpuMeter({ billing: system.procs.get('billing')?.child?.pid })
    const t0 = performance.now()
    let i = 0
    let published = 0
    await Promise.all(Array.from({ length: 256 }, async () => {
      while (i < events.length) {
        const k = i++
        await js.publish(subject, payloads[k], { msgID: events[k].event_id })
      }
      published = performance.now()
    }))
    // Billing applies in stream order, so first watch the last events published (a cheap primary-key lookup,
    // every 10 ms), then confirm with a full count (which keeps polling should anything have been redelivered).
    const tail = events.slice(-256).map((e) => e.event_id)
    const deadline = t0 + 300_000
    for (;;) {
      const { rows } = await db.query<{ n: number }>('select count(*)::int as n from billing.processed_events where event_id = any($1::uuid[])', [tail])
      if (rows[0].n === tail.length) break
      if (performance.now() > deadline) throw new Error(`billing has not applied the last events within 5 minutes (${rows[0].n} of the last ${tail.length})`)
      await sleep(10)
    }
    for (let applied = await countApplied(db, u.users); applied < before + u.events; applied = await countApplied(db, u.users)) {
      if (performance.now() > deadline) throw new Error(`billing applied only ${applied - before} of ${u.events} events in 5 minutes`)
      await sleep(20)
    }
    const seconds = (performance.now() - t0) / 1000
    const perS = u.events / seconds
    const billingCpuMs = meter().billing
    ctx.log(`usage: billing applied ${u.events} events in ${seconds.toFixed(2)} s = ${Math.round(perS)}/s (published in ${((published - t0) / 1000).toFixed(2)} s)`)

    // 2. The raw baseline, same events, same statements, on a scratch schema.
    const raw: Record<string, number> = {}
    const rawCpuUs: Record<string, number> = {}
    for (const c of u.rawConcurrency) {
      const cpu0 = process.cpuUsage()
      raw[c] = await rawBaseline(db, makeEvents(u.events, u.users, 7), u.batchSize, c, signupBonus)
      const used = process.cpuUsage(cpu0)
      rawCpuUs[c] = (used.user + used.system) / u.events
      ctx.log(`usage: raw baseline, batches of ${u.batchSize}, ${c} in flight: ${Math.round(raw[c])}/s`)
    }
    const best = Math.max(...Object.values(raw))

    // 3. Latency at a steady rate: publish→commit, the commit seen through LISTEN/NOTIFY from a trigger on billing's table.
    const steady = await steadyLatency(ctx, db, js, subject)

    ctx.results.figures.push(
      { key: 'usage_events_per_s', label: `Usage events applied by billing (${u.events} events, ${u.users} users)`, value: round(perS, 0), unit: '/s', baseline: `published in ${((published - t0) / 1000).toFixed(2)} s, applied in ${seconds.toFixed(2)} s` },
      { key: 'usage_apply_ratio', label: 'Usage apply rate / raw set-based batches (plain pg, same SQL)', value: round(perS / best), unit: '×', baseline: `raw ${Object.entries(raw).map(([c, v]) => `${Math.round(v)}/s with ${c} in flight`).join(', ')}; CPU per event: billing ${billingCpuMs === null ? '?' : Math.round((billingCpuMs * 1000) / u.events)} µs, raw client ${Math.round(rawCpuUs[u.rawConcurrency[0]])} µs`, target: { op: '>=', value: 0.5 } },
      { key: 'usage_p50_ms', label: `Usage publish→commit p50 at ${u.steadyRate} events/s`, value: round(steady.p50, 2), unit: 'ms' },
      { key: 'usage_p99_ms', label: `Usage publish→commit p99 at ${u.steadyRate} events/s`, value: round(steady.p99, 2), unit: 'ms', baseline: `n=${steady.n}, max ${steady.max.toFixed(1)} ms`, target: { op: '<', value: 100 } }
    )
    ctx.results.details.usage = {
      events: u.events,
      users: u.users,
      batch_size: u.batchSize,
      publish_seconds: round((published - t0) / 1000, 2),
      apply_seconds: round(seconds, 2),
      events_per_s: round(perS, 0),
      billing_cpu_us_per_event: billingCpuMs === null ? null : round((billingCpuMs * 1000) / u.events, 1),
      raw_client_cpu_us_per_event: Object.fromEntries(Object.entries(rawCpuUs).map(([c, v]) => [`${c}_in_flight`, round(v, 1)])),
      raw_events_per_s: Object.fromEntries(Object.entries(raw).map(([c, v]) => [`${c}_in_flight`, round(v, 0)])),
      steady: { rate: u.steadyRate, seconds: u.steadyS, latency_ms: Object.fromEntries(Object.entries(steady).map(([k, v]) => [k, round(v, 2)])) }
    }
  } finally {
    await nc.drain().catch(() => {})
    await db.end()
  }
}

async function steadyLatency (ctx: BenchContext, db: pg.Pool, js: ReturnType<typeof jetstream>, subject: string) {
  const u = ctx.profile.usage
  await db.query(`create or replace function public.bench_notify_applied() returns trigger language plpgsql as $$
    begin perform pg_notify('bench_applied', new.event_id::text); return null; end $$`)
  await db.query('create trigger bench_notify_applied after insert on billing.processed_events for each row execute function public.bench_notify_applied()')
  const listener = await db.connect()
  const sentAt = new Map<string, number>()
  const latencies: number[] = []
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => { done = resolve })
  const total = Math.round(u.steadyRate * u.steadyS)
  listener.on('notification', (n) => {
    const t = sentAt.get(n.payload ?? '')
    if (t === undefined) return
    latencies.push(performance.now() - t)
    sentAt.delete(n.payload!)
    if (latencies.length === total) done()
  })
  await listener.query('listen bench_applied')
  try {
    const events = makeEvents(total, u.users, 11)
    ctx.log(`usage: ${total} events at ${u.steadyRate}/s`)
    const start = performance.now()
    let sent = 0
    const pubs: Promise<unknown>[] = []
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) * u.steadyRate) / 1000))
      for (; sent < due; sent++) {
        const e = events[sent]
        sentAt.set(e.event_id, performance.now())
        pubs.push(js.publish(subject, JSON.stringify(e), { msgID: e.event_id }))
      }
      await sleep(1)
    }
    await Promise.all(pubs)
    await Promise.race([all, sleep(30_000)])
    if (latencies.length < total) ctx.results.notes.push(`usage: only ${latencies.length} of ${total} steady-rate events were seen committed within 30 s.`)
  } finally {
    await listener.query('unlisten bench_applied').catch(() => {})
    listener.release()
    await db.query('drop trigger if exists bench_notify_applied on billing.processed_events')
  }
  const s = summarize(latencies)
  ctx.log(`usage: publish→commit at ${u.steadyRate}/s p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, max ${s.max.toFixed(1)} ms`)
  return s
}
