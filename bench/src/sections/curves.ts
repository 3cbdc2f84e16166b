// Growth curves (issue #18): the cost of what grows in production, at 3–4 sizes in one run, each with a flag when
// it grows faster than it must. Data is seeded straight into the services' tables (what months of use would leave),
// then measured through the gateway like a client.
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import pg from 'pg'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { namespaced, Subjects } from '@chat-platform/contracts'
import { request } from 'undici'
import type { BenchContext, CurvePoint } from '../context.ts'
import { agent, api, createSession } from '../http.ts'
import { cpuMeter, heapUsedOf, rssOf } from '../procs.ts'
import { round, sleep, summarize } from '../stats.ts'
import { pidOf } from '../system-control.ts'
import { tokenSigner } from '../tokens.ts'

// Synthetic user ids of each curve, far from auth's and from the usage section's (9,000,001…).
const LEDGER_USERS = 8_000_000
const APPLY_USERS = 8_100_000
const OUTBOX_USERS = 8_700_000
const GATEWAY_USERS = 7_000_000

/** `last / first > limit` (null when either is missing). */
const growsBy = (points: CurvePoint[], limit: number): boolean | null => {
  const a = points[0]?.value
  const b = points.at(-1)?.value
  return a === null || a === undefined || b === null || b === undefined || a <= 0 ? null : b / a > limit
}

export async function curvesSection (ctx: BenchContext): Promise<void> {
  const db = new pg.Pool({ connectionString: ctx.system.databaseUrl, max: 4 })
  const nc = await connect({ servers: ctx.system.env.NATS_URL })
  const parts: [string, () => Promise<void>][] = [
    ['session length', () => sessionLengthCurve(ctx, db)],
    ['ledger size', () => ledgerCurve(ctx, db)],
    ['apply vs users', () => applyCurve(ctx, db, nc)],
    ['outbox backlog', () => outboxCurve(ctx, db, nc)],
    ['gateway tokens', () => gatewayTokensCurve(ctx)]
  ]
  // A curve that fails does not stop the others; the section fails at the end, naming them.
  const failed: string[] = []
  try {
    for (const [name, run] of parts) {
      try {
        await run()
      } catch (err) {
        failed.push(`${name} (${(err as Error).message.split('\n')[0]})`)
        ctx.log(`curves: ${name} failed: ${(err as Error).stack ?? err}`)
      }
    }
  } finally {
    await nc.drain().catch(() => {})
    await db.end()
  }
  if (failed.length) throw new Error(`curves failed: ${failed.join('; ')}`)
}

// ---- send latency and chat CPU per exchange vs the session's length ----

async function sessionLengthCurve (ctx: BenchContext, db: pg.Pool): Promise<void> {
  const c = ctx.profile.curves
  const gw = ctx.system.gatewayUrl
  const user = ctx.users[0]
  ctx.sim.reset({ latencyMs: 0, usage: { prompt_tokens: 120, completion_tokens: 40 } })
  const latency: CurvePoint[] = []
  const cpu: CurvePoint[] = []
  const details: Record<string, unknown>[] = []
  // Each send adds two messages: the sends of a point are spread over sessions of the same length, SENDS_PER_SESSION
  // each, so a point stays at its length (±10). A session's first send is not timed (its first read of that session).
  const SENDS_PER_SESSION = 5
  const seed = async (length: number) => {
    const session = await createSession(gw, user.token)
    // Earlier turns as chat stores them: alternating user and assistant, answered, ~24 tokens each.
    await db.query(
      `insert into chat.messages (session_id, user_id, role, content, tokens, content_tokens, status)
       select $1, $2, case when g % 2 = 1 then 'user' else 'assistant' end,
         'Earlier message ' || g || ': ' || repeat('lorem ipsum dolor ', 6), 0, 24, 'ok'
       from generate_series(1, $3::int) as g`, [session, user.id, length])
    await api(gw, 'POST', `/api/sessions/${session}/messages`, { token: user.token, body: { content: 'first' } })
    return session
  }
  try {
    // Warm chat's code paths up first, so the first point is not the one paying for it.
    const warm = await seed(c.sessionLengths[0])
    for (let w = 0; w < 10; w++) await api(gw, 'POST', `/api/sessions/${warm}/messages`, { token: user.token, body: { content: `warm-up ${w}` } })
    for (const length of c.sessionLengths) {
      const sessions: number[] = []
      for (let k = 0; k < Math.ceil(c.sendsPerPoint / SENDS_PER_SESSION); k++) sessions.push(await seed(length))
      const samples: number[] = []
      const prompts: number[] = []
      const meter = cpuMeter({ chat: pidOf(ctx, 'chat') })
      let failures = 0
      for (let i = 0; i < c.sendsPerPoint; i++) {
        const session = sessions[Math.floor(i / SENDS_PER_SESSION)]
        const before = ctx.sim.requests.length
        const t0 = performance.now()
        const res = await api(gw, 'POST', `/api/sessions/${session}/messages`, { token: user.token, body: { content: `Message ${i} after ${length} earlier ones: how is the weather?` } })
        if (res.status === 200) samples.push(performance.now() - t0)
        else failures++
        const req = ctx.sim.requests[before]
        if (req) prompts.push(req.body.messages.length)
      }
      const chatMs = meter().chat
      const s = summarize(samples)
      const p = summarize(prompts)
      const cpuPer = chatMs === null || samples.length === 0 ? null : chatMs / samples.length
      latency.push({ size: length, value: round(s.p50, 2), extra: `p99 ${s.p99.toFixed(1)} ms, prompt ${p.p50} messages` })
      cpu.push({ size: length, value: round(cpuPer, 2) })
      details.push({ prior_messages: length, sessions: sessions.length, sends: samples.length, failures, latency_ms: { p50: round(s.p50, 2), p99: round(s.p99, 2) }, chat_cpu_ms_per_exchange: round(cpuPer, 3), prompt_messages: { min: Math.min(...prompts), median: p.p50, max: Math.max(...prompts) } })
      ctx.log(`curves: sessions of ${length} messages: send p50 ${s.p50.toFixed(1)} ms, chat ${cpuPer?.toFixed(2)} ms CPU per exchange, prompt ${Math.min(...prompts)}–${Math.max(...prompts)} messages${failures ? `, ${failures} failed` : ''}`)
      if (failures) ctx.results.notes.push(`curves (session length ${length}): ${failures} sends failed.`)
    }
  } finally {
    ctx.sim.reset()
  }
  const rule = 'last > 2× first (the prompt window keeps it flat)'
  ctx.results.curves.push(
    { key: 'curve_send_p50_vs_session_length', label: 'Send p50 latency vs prior messages in the session', sizeLabel: 'messages', unit: 'ms', points: latency, rule, flag: growsBy(latency, 2) },
    { key: 'curve_chat_cpu_vs_session_length', label: 'Chat CPU per exchange vs prior messages in the session', sizeLabel: 'messages', unit: 'ms', points: cpu, rule, flag: growsBy(cpu, 2) }
  )
  ctx.results.details.curve_session_length = details
}

// ---- GET /api/billing/transactions and the usage report vs the user's ledger rows ----

async function ledgerCurve (ctx: BenchContext, db: pg.Pool): Promise<void> {
  const c = ctx.profile.curves
  const gw = ctx.system.gatewayUrl
  const signer = tokenSigner(ctx.system.env.JWT_PRIVATE_KEY)
  const tx: CurvePoint[] = []
  const report: CurvePoint[] = []
  const details: Record<string, unknown>[] = []
  for (const [i, rows] of c.ledgerRows.entries()) {
    const userId = LEDGER_USERS + 1 + i
    // `rows` usage rows spread over the last 29 days (all inside the report's default 30), newest last, with a
    // consistent running balance; the account holds the final one.
    const t0 = performance.now()
    await db.query('insert into billing.accounts (user_id, balance) values ($1, $2)', [userId, -150 * rows])
    await db.query(
      `insert into billing.transactions (user_id, change_amount, balance_after, kind, description, source_id, event_id,
         model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source, created_at)
       select $1::bigint, -150, -150 * g, 'usage', '对话消耗 · gpt-4o-mini · 输入 100 + 输出 50', 'bench-' || $1::bigint || '-' || g, gen_random_uuid(),
         'gpt-4o-mini', 100, 50, 1, 1, 'provider', now() - interval '29 days' + (g * (interval '29 days' / $2::int))
       from generate_series(1, $2::int) as g`, [userId, rows])
    await db.query('analyze billing.transactions')
    const seedS = (performance.now() - t0) / 1000
    const token = signer(userId)
    const timed = async (path: string) => {
      const samples: number[] = []
      let bad = 0
      await api(gw, 'GET', path, { token })
      for (let k = 0; k < c.readsPerPoint; k++) {
        const s0 = performance.now()
        const res = await api(gw, 'GET', path, { token })
        if (res.status === 200) samples.push(performance.now() - s0)
        else bad++
      }
      if (bad) ctx.results.notes.push(`curves (ledger ${rows}): ${bad} reads of ${path} failed.`)
      return summarize(samples)
    }
    const t = await timed('/api/billing/transactions')
    const u = await timed('/api/billing/usage?group_by=day')
    tx.push({ size: rows, value: round(t.p50, 2), extra: `p99 ${t.p99.toFixed(1)} ms` })
    report.push({ size: rows, value: round(u.p50, 2), extra: `p99 ${u.p99.toFixed(1)} ms` })
    details.push({ ledger_rows: rows, seeded_in_s: round(seedS, 2), transactions_ms: { p50: round(t.p50, 2), p99: round(t.p99, 2) }, usage_by_day_ms: { p50: round(u.p50, 2), p99: round(u.p99, 2) } })
    ctx.log(`curves: ledger of ${rows} rows (seeded in ${seedS.toFixed(1)} s): transactions p50 ${t.p50.toFixed(2)} ms, usage report p50 ${u.p50.toFixed(2)} ms`)
  }
  const first = c.ledgerRows[0]
  const last = c.ledgerRows.at(-1)!
  ctx.results.curves.push(
    { key: 'curve_transactions_vs_ledger_rows', label: 'GET /api/billing/transactions p50 vs the user\'s ledger rows', sizeLabel: 'rows', unit: 'ms', points: tx, rule: 'last > 2× first (one page by index: flat)', flag: growsBy(tx, 2) },
    // The report sums every usage row in its range: linear in them is what it must cost; worse than that is flagged.
    { key: 'curve_usage_report_vs_ledger_rows', label: 'GET /api/billing/usage?group_by=day p50 vs the user\'s usage rows (all in the 30-day range)', sizeLabel: 'rows', unit: 'ms', points: report, rule: `last > first × ${last / first} rows ratio × 2 (an aggregate over its rows is linear at best)`, flag: growsBy(report, (2 * last) / first) }
  )
  ctx.results.details.curve_ledger = details
}

// ---- billing's apply rate vs distinct users ----

async function applyCurve (ctx: BenchContext, db: pg.Pool, nc: NatsConnection): Promise<void> {
  const c = ctx.profile.curves
  const ns = namespaced(ctx.system.env.EVENTS_NAMESPACE)
  const subject = ns.subject(Subjects.usageRecorded)
  const js = jetstream(nc)
  const points: CurvePoint[] = []
  const details: Record<string, unknown>[] = []
  for (const [i, users] of c.applyUsers.entries()) {
    const base = APPLY_USERS + i * 100_000
    const occurred = new Date().toISOString()
    const events = Array.from({ length: c.applyEvents }, (_, k) => ({ event_id: randomUUID(), occurred_at: occurred, user_id: base + 1 + (k % users), session_id: 1, message_id: 1 + k, model: 'gpt-4o-mini', prompt_tokens: 100, completion_tokens: 50, usage_source: 'provider' as const }))
    const meter = cpuMeter({ billing: pidOf(ctx, 'billing') })
    const t0 = performance.now()
    let next = 0
    await Promise.all(Array.from({ length: 256 }, async () => {
      while (next < events.length) {
        const e = events[next++]
        await js.publish(subject, JSON.stringify(e), { msgID: e.event_id })
      }
    }))
    const deadline = t0 + 300_000
    for (;;) {
      const { rows } = await db.query<{ n: number }>('select count(*)::int as n from billing.processed_events where user_id between $1 and $2', [base + 1, base + users])
      if (rows[0].n >= events.length) break
      if (performance.now() > deadline) throw new Error(`billing applied ${rows[0].n} of ${events.length} events for ${users} users in 5 minutes`)
      await sleep(20)
    }
    const seconds = (performance.now() - t0) / 1000
    const billingMs = meter().billing
    const rate = events.length / seconds
    const cpuUs = billingMs === null ? null : (billingMs * 1000) / events.length
    points.push({ size: users, value: round(rate, 0), extra: `billing ${cpuUs?.toFixed(0)} µs CPU per event` })
    details.push({ users, events: events.length, seconds: round(seconds, 2), events_per_s: round(rate, 0), billing_cpu_us_per_event: round(cpuUs, 1) })
    ctx.log(`curves: ${events.length} usage events over ${users} users applied in ${seconds.toFixed(2)} s = ${Math.round(rate)}/s, billing ${cpuUs?.toFixed(0)} µs CPU each`)
  }
  const rates = points.map((p) => p.value).filter((v): v is number => v !== null)
  ctx.results.curves.push({
    key: 'curve_apply_rate_vs_users',
    label: `Billing's apply rate vs distinct users the events are spread over (${c.applyEvents} events each; batches of ≤ 100 events, so ≥ 100 users means every event of a batch has its own account; each new user also opens an account with its signup-bonus row)`,
    sizeLabel: 'users',
    unit: 'events/s',
    points,
    rule: 'slowest < ½ fastest',
    flag: rates.length < 2 ? null : Math.min(...rates) < 0.5 * Math.max(...rates)
  })
  ctx.results.details.curve_apply_users = details
}

// ---- the outbox relay draining a backlog ----

async function outboxCurve (ctx: BenchContext, db: pg.Pool, nc: NatsConnection): Promise<void> {
  const sizes = ctx.profile.curves.outboxBacklog
  const largest = Math.max(...sizes)
  const ns = namespaced(ctx.system.env.EVENTS_NAMESPACE)
  const subject = ns.subject(Subjects.usageRecorded)
  const chatPid = pidOf(ctx, 'chat')
  const users = 1000

  // Baseline: as many events of the same size as the largest backlog, published from one process straight to
  // JetStream (256 in flight, with Nats-Msg-Id, acked), on a scratch stream so billing does not apply them.
  const jsm = await jetstreamManager(nc)
  const scratch = ns.stream('BENCH_SCRATCH')
  const scratchSubject = ns.subject('bench.scratch.usage')
  await jsm.streams.add({ name: scratch, subjects: [scratchSubject] })
  let rawRate: number
  try {
    const js = jetstream(nc)
    const occurred = new Date().toISOString()
    const payloads = Array.from({ length: largest }, (_, k) => ({ id: randomUUID(), body: JSON.stringify({ event_id: randomUUID(), occurred_at: occurred, user_id: OUTBOX_USERS + 1 + (k % users), session_id: 1, message_id: 1 + k, model: 'gpt-4o-mini', prompt_tokens: 100, completion_tokens: 50, usage_source: 'provider' }) }))
    const t0 = performance.now()
    let next = 0
    await Promise.all(Array.from({ length: 256 }, async () => {
      while (next < payloads.length) {
        const p = payloads[next++]
        await js.publish(scratchSubject, p.body, { msgID: p.id })
      }
    }))
    rawRate = largest / ((performance.now() - t0) / 1000)
  } finally {
    await jsm.streams.delete(scratch).catch(() => {})
  }

  const points: CurvePoint[] = []
  const details: Record<string, unknown>[] = []
  let applied = 0
  for (const n of sizes) {
    // The backlog a NATS outage leaves: `n` usage events in chat's outbox, unpublished, written a millisecond apart
    // (each exchange commits its own row), made visible at once (one statement), as the relay finds them when NATS
    // is back; the relay is woken as a commit wakes it.
    const rssBefore = rssOf(chatPid)
    const t0 = performance.now()
    await db.query(
      `with ev as (select gen_random_uuid() as id, g from generate_series(1, $1::int) as g)
       insert into chat.outbox (id, subject, payload, created_at)
       select id, $2, jsonb_build_object('event_id', id, 'occurred_at', to_char((now() - ($1::int - g) * interval '1 millisecond') at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'user_id', $3::bigint + 1 + (g % $4::int), 'session_id', 1, 'message_id', g, 'model', 'gpt-4o-mini',
         'prompt_tokens', 100, 'completion_tokens', 50, 'usage_source', 'provider', 'estimated_amount', 150),
         now() - ($1::int - g) * interval '1 millisecond'
       from ev`, [n, subject, OUTBOX_USERS, users])
    await db.query("select pg_notify('outbox_chat', '')")
    const seeded = performance.now()
    let peakRss = rssBefore?.rss_mb ?? 0
    let left = n
    const deadline = seeded + 600_000
    while (left > 0) {
      await sleep(100)
      const r = rssOf(chatPid)
      if (r) peakRss = Math.max(peakRss, r.rss_mb)
      left = (await db.query<{ n: number }>('select count(*)::int as n from chat.outbox where published_at is null')).rows[0].n
      if (performance.now() > deadline) throw new Error(`the relay left ${left} of ${n} events unpublished after 10 minutes`)
    }
    const drainS = (performance.now() - seeded) / 1000
    const rate = n / drainS
    // Billing applies the backlog next: wait for it, so the next point (and curve) measures a quiet system.
    applied += n
    await waitApplied(db, OUTBOX_USERS + 1, OUTBOX_USERS + users, applied, 600_000)
    const applyS = (performance.now() - seeded) / 1000
    ctx.log(`curves: outbox backlog of ${n} (seeded in ${((seeded - t0) / 1000).toFixed(1)} s) drained in ${drainS.toFixed(2)} s = ${Math.round(rate)}/s (raw publish ${Math.round(rawRate)}/s); chat RSS ${rssBefore?.rss_mb.toFixed(0)} → peak ${peakRss.toFixed(0)} MB; billing had applied it after ${applyS.toFixed(1)} s`)
    points.push({ size: n, value: round(rate, 0), extra: `${drainS.toFixed(1)} s, chat RSS ${rssBefore?.rss_mb.toFixed(0)} → peak ${peakRss.toFixed(0)} MB` })
    details.push({ backlog: n, drain_seconds: round(drainS, 2), events_per_s: round(rate, 0), chat_rss_mb_before: round(rssBefore?.rss_mb, 1), chat_rss_mb_peak: round(peakRss, 1), billing_applied_after_s: round(applyS, 1) })
  }
  const last = points.at(-1)!
  const lastDetail = details.at(-1) as { drain_seconds: number, chat_rss_mb_before: number, chat_rss_mb_peak: number }
  ctx.results.curves.push({
    key: 'curve_outbox_drain_rate_vs_backlog',
    label: 'Outbox relay drain rate vs the backlog a NATS outage left (chat RSS while draining)',
    sizeLabel: 'events',
    unit: 'events/s',
    points,
    rule: 'largest backlog drained at < ½ the rate of the smallest (each batch must cost the same)',
    flag: points.length < 2 || points[0].value === null || last.value === null ? null : last.value < 0.5 * points[0].value
  })
  ctx.results.figures.push({
    key: 'outbox_drain_vs_raw_publish_ratio',
    label: `Outbox relay draining a backlog of ${largest} events / one process publishing the same to JetStream`,
    value: last.value === null ? null : round(last.value / rawRate),
    unit: '×',
    baseline: `relay ${last.value}/s (${lastDetail.drain_seconds} s), raw publish ${Math.round(rawRate)}/s; chat RSS ${lastDetail.chat_rss_mb_before} MB before, peak ${lastDetail.chat_rss_mb_peak} MB while draining`
  })
  ctx.results.details.curve_outbox = { raw_publish_per_s: round(rawRate, 0), points: details }
}

async function waitApplied (db: pg.Pool, from: number, to: number, n: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const { rows } = await db.query<{ n: number }>('select count(*)::int as n from billing.processed_events where user_id between $1 and $2', [from, to])
    if (rows[0].n >= n) return
    if (performance.now() > deadline) throw new Error(`billing applied ${rows[0].n} of ${n} events in ${timeoutMs / 1000} s`)
    await sleep(200)
  }
}

// ---- the gateway's memory vs distinct users and tokens seen ----

async function gatewayTokensCurve (ctx: BenchContext): Promise<void> {
  const sizes = ctx.profile.curves.gatewayTokens
  const gw = ctx.system.gatewayUrl
  const gwPid = pidOf(ctx, 'gateway')
  const signer = tokenSigner(ctx.system.env.JWT_PRIVATE_KEY)
  // An authenticated route whose upstream does no I/O (chat's model list), so the gateway is what is measured;
  // GET /api/user/balance would open a billing account per new user.
  const url = `${gw}/api/models`
  const points: CurvePoint[] = []
  const details: Record<string, unknown>[] = []
  const start = rssOf(gwPid)
  let seen = 0
  for (const size of sizes) {
    // Each new token is a user the gateway has not seen: a signature verification, a cache entry, a rate-limit key.
    const tokens = Array.from({ length: size - seen }, (_, k) => signer(GATEWAY_USERS + 1 + seen + k))
    const statuses: Record<string, number> = {}
    let next = 0
    const t0 = performance.now()
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < tokens.length) {
        const token = tokens[next++]
        const res = await request(url, { headers: { authorization: `Bearer ${token}` }, dispatcher: agent }).catch(() => null)
        await res?.body.dump()
        const s = res?.statusCode ?? 0
        statuses[s] = (statuses[s] ?? 0) + 1
      }
    }))
    const perS = tokens.length / ((performance.now() - t0) / 1000)
    seen = size
    const r = rssOf(gwPid)
    const heap = await heapUsedOf(gw)
    points.push({ size, value: round(r?.rss_mb, 1), extra: `heap ${heap?.toFixed(1)} MB` })
    details.push({ tokens_seen: size, rss_mb: round(r?.rss_mb, 1), peak_rss_mb: round(r?.peak_mb, 1), heap_used_mb: round(heap, 1), new_tokens_per_s: round(perS, 0), statuses })
    ctx.log(`curves: gateway after ${size} distinct tokens: RSS ${r?.rss_mb.toFixed(1)} MB, heap ${heap?.toFixed(1)} MB (${Math.round(perS)} new tokens/s, ${JSON.stringify(statuses)})`)
    if (statuses['401']) ctx.results.notes.push(`curves (gateway tokens): ${statuses['401']} signed tokens were refused with 401.`)
  }
  ctx.results.curves.push({
    key: 'curve_gateway_rss_vs_tokens',
    label: 'Gateway RSS vs distinct users/tokens seen (verified-token cache bound 10,000 entries, local rate-limit keys 100,000; both evict)',
    sizeLabel: 'tokens',
    unit: 'MB',
    points,
    rule: 'last > 2× first (bounded caches: flat once full)',
    flag: growsBy(points, 2)
  })
  ctx.results.details.curve_gateway_tokens = { rss_mb_before: round(start?.rss_mb, 1), points: details }
}
