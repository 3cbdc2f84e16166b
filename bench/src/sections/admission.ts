// Admission with pending charges: the send path while billing's balance copy lags (billing stopped, so every charge
// chat records stays unapplied and chat's 402 check subtracts it from a stale copy) against the same sends with
// billing running, interleaved; then a user sending until 402 while billing is down, and the balance it ends on.
import { performance } from 'node:perf_hooks'
import pg from 'pg'
import { waitFor } from '@chat-platform/platform/testing'
import type { BenchContext } from '../context.ts'
import { api, createSession, createUsers, type BenchUser } from '../http.ts'
import { cpuMeter } from '../procs.ts'
import { median, round } from '../stats.ts'
import { pidOf } from '../system-control.ts'
import { sendLoad, type SendRun } from './send.ts'

type Mode = 'running' | 'lagging'

/** Chat's recorded charges and billing's applied ones for these users (equal once billing has caught up). */
async function charges (db: pg.Pool, userIds: number[]): Promise<{ recorded: number, applied: number }> {
  const { rows } = await db.query<{ recorded: string, applied: string }>(
    `select (select coalesce(sum(recorded), 0) from chat.user_charges where user_id = any($1::bigint[])) as recorded,
            (select coalesce(sum(chat_applied), 0) from billing.accounts where user_id = any($1::bigint[])) as applied`, [userIds])
  return { recorded: Number(rows[0].recorded), applied: Number(rows[0].applied) }
}

async function caughtUp (ctx: BenchContext, db: pg.Pool, userIds: number[]): Promise<number> {
  const t0 = performance.now()
  await waitFor(async () => { const c = await charges(db, userIds); return c.applied >= c.recorded }, { timeoutMs: 120_000, intervalMs: 100, what: 'billing applying the charges recorded while it was down' })
  return performance.now() - t0
}

export async function admissionSection (ctx: BenchContext): Promise<void> {
  const a = ctx.profile.admission
  const gw = ctx.system.gatewayUrl
  const users = await createUsers(gw, a.users, 1_000_000)
  const userIds = users.map((u) => u.id)
  const db = new pg.Pool({ connectionString: ctx.system.databaseUrl, max: 2 })
  ctx.sim.reset({ latencyMs: 0, usage: { prompt_tokens: 120, completion_tokens: 40 } })
  const runs: Record<Mode, (SendRun & { chat_cpu_ms: number, gateway_cpu_ms: number })[]> = { running: [], lagging: [] }
  const catchUpMs: number[] = []
  try {
    ctx.log('admission: warm-up')
    await sendLoad(gw, users, Math.min(2, a.seconds), 10)
    for (let r = 0; r < a.rounds; r++) {
      const order: Mode[] = r % 2 === 0 ? ['running', 'lagging'] : ['lagging', 'running']
      for (const mode of order) {
        if (mode === 'lagging') await ctx.system.stop('billing')
        const meter = cpuMeter({ chat: pidOf(ctx, 'chat'), gateway: pidOf(ctx, 'gateway') })
        const run = await sendLoad(gw, users, a.seconds, 10)
        const used = meter()
        const per = (v: number | null) => v === null || run.exchanges === 0 ? Number.NaN : v / run.exchanges
        runs[mode].push({ ...run, chat_cpu_ms: per(used.chat), gateway_cpu_ms: per(used.gateway) })
        const c = await charges(db, userIds)
        ctx.log(`admission: round ${r + 1} billing ${mode}: ${run.exchanges} exchanges, ${run.per_s.toFixed(1)}/s, p50 ${run.latency.p50.toFixed(1)} ms, chat ${per(used.chat).toFixed(2)} ms CPU each; charges recorded ${c.recorded}, applied ${c.applied}${Object.keys(run.failures).length ? `, failures ${JSON.stringify(run.failures)}` : ''}`)
        if (mode === 'lagging') {
          await ctx.system.start('billing')
          catchUpMs.push(await caughtUp(ctx, db, userIds))
        }
      }
    }

    // One user with only the signup bonus sends one message at a time while billing is down, until 402.
    const poor: BenchUser = (await createUsers(gw, 1, 0))[0]
    const before = (await api(gw, 'GET', '/api/user/balance', { token: poor.token })).body.balance as number
    const session = await createSession(gw, poor.token)
    await ctx.system.stop('billing')
    let admitted = 0
    let refusedWith = 0
    try {
      for (let i = 0; i < 10_000; i++) {
        const res = await api(gw, 'POST', `/api/sessions/${session}/messages`, { token: poor.token, body: { content: `admission check ${i}` } })
        if (res.status === 200) { admitted++; continue }
        refusedWith = res.status
        break
      }
    } finally {
      await ctx.system.start('billing')
    }
    await caughtUp(ctx, db, [poor.id])
    const after = (await api(gw, 'GET', '/api/user/balance', { token: poor.token })).body.balance as number
    const perExchange = admitted ? (before - after) / admitted : Number.NaN
    ctx.log(`admission: with billing down, a balance of ${before} admitted ${admitted} exchanges, then ${refusedWith}; balance after billing caught up ${after}`)
    if (refusedWith !== 402) ctx.results.notes.push(`admission: the low-balance user was stopped by ${refusedWith || 'nothing'} instead of 402 while billing was down.`)
    if (after < -perExchange) ctx.results.notes.push(`admission: the low-balance user ended at ${after}, more than one exchange (${perExchange}) below zero.`)

    const m = (mode: Mode, k: 'chat_cpu_ms' | 'gateway_cpu_ms' | 'per_s') => median(runs[mode].map((x) => x[k]).filter(Number.isFinite))
    const p50 = (mode: Mode) => median(runs[mode].map((x) => x.latency.p50))
    const failures = [...runs.running, ...runs.lagging].reduce((n, x) => n + Object.values(x.failures).reduce((a, b) => a + b, 0), 0)
    if (failures) ctx.results.notes.push(`admission: ${failures} exchanges failed during the runs (see details.admission).`)
    ctx.results.figures.push(
      { key: 'admission_lag_cpu_ratio', label: `Chat CPU per exchange with billing stopped (charges unapplied, balance copy stale) / with billing running (${a.users} users)`, value: round(m('lagging', 'chat_cpu_ms') / m('running', 'chat_cpu_ms')), unit: '×', baseline: `running ${m('running', 'chat_cpu_ms').toFixed(2)} ms, lagging ${m('lagging', 'chat_cpu_ms').toFixed(2)} ms per exchange` },
      { key: 'admission_lag_latency_ratio', label: 'Send p50 latency with billing stopped / running', value: round(p50('lagging') / p50('running')), unit: '×', baseline: `running p50 ${p50('running').toFixed(1)} ms (${m('running', 'per_s').toFixed(1)}/s), lagging p50 ${p50('lagging').toFixed(1)} ms (${m('lagging', 'per_s').toFixed(1)}/s)` },
      { key: 'admission_lag_overdraft', label: 'Low-balance user sending until refused while billing is down: balance after billing caught up', value: after, unit: 'tokens', baseline: `started at ${before}, ${admitted} exchanges admitted (≈${Number.isFinite(perExchange) ? Math.round(perExchange) : '?'} each), then ${refusedWith}`, target: { op: '>=', value: Number.isFinite(perExchange) ? -Math.round(perExchange) : 0 } }
    )
    const out = (x: (typeof runs)['running'][number]) => ({ exchanges: x.exchanges, per_s: round(x.per_s, 1), p50_ms: round(x.latency.p50, 2), p99_ms: round(x.latency.p99, 2), chat_cpu_ms_per_exchange: round(x.chat_cpu_ms, 3), gateway_cpu_ms_per_exchange: round(x.gateway_cpu_ms, 3), failures: x.failures })
    ctx.results.details.admission = {
      method: `${a.users} users, one message in flight each, ${a.seconds} s per run, ${a.rounds} interleaved pairs; "lagging" = billing stopped (SIGTERM) for the run, so chat admits on billing's Redis copy minus every charge it recorded since; billing restarted after and its catch-up timed`,
      running: runs.running.map(out),
      lagging: runs.lagging.map(out),
      catch_up_ms: catchUpMs.map((x) => round(x, 0)),
      low_balance: { balance_before: before, admitted, refused_with: refusedWith, balance_after: after }
    }
  } finally {
    ctx.sim.reset()
    await db.end()
  }
}
