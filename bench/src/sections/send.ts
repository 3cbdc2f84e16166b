// Send path: non-streaming POST /api/sessions/{id}/messages end to end through the gateway, fake LLM upstream.
import { performance } from 'node:perf_hooks'
import type { BenchContext } from '../context.ts'
import { api, createSession, createUsers, type BenchUser } from '../http.ts'
import { round, summarize, type LatencySummary } from '../stats.ts'
import { cpuMeter } from '../procs.ts'

export interface SendRun { exchanges: number, seconds: number, per_s: number, latency: LatencySummary, failures: Record<string, number>, cpu_ms_per_exchange?: Record<string, number | null> }

/**
 * Each user sends one message at a time, in its own sessions (a new one every `sessionLength` exchanges,
 * so prompts stay conversation-sized), until `durationS` has passed.
 */
export async function sendLoad (gateway: string, users: BenchUser[], durationS: number, sessionLength: number): Promise<SendRun> {
  const samples: number[] = []
  const failures: Record<string, number> = {}
  const start = performance.now()
  const end = start + durationS * 1000
  await Promise.all(users.map(async (u, ui) => {
    let session = 0
    for (let i = 0; performance.now() < end; i++) {
      if (i % sessionLength === 0) session = await createSession(gateway, u.token)
      const t0 = performance.now()
      const res = await api(gateway, 'POST', `/api/sessions/${session}/messages`, { token: u.token, body: { content: `Benchmark message ${i} from user ${ui}: how is the weather today?` } })
        .catch((err: Error) => ({ status: 0, body: err.message }))
      if (res.status === 200) samples.push(performance.now() - t0)
      else failures[res.status] = (failures[res.status] ?? 0) + 1
    }
  }))
  const seconds = (performance.now() - start) / 1000
  return { exchanges: samples.length, seconds, per_s: samples.length / seconds, latency: summarize(samples), failures }
}

const fmt = (r: SendRun) => `${r.exchanges} exchanges in ${r.seconds.toFixed(1)} s = ${r.per_s.toFixed(1)}/s, p50 ${r.latency.p50.toFixed(1)} ms, p99 ${r.latency.p99.toFixed(1)} ms${Object.keys(r.failures).length ? `, failures ${JSON.stringify(r.failures)}` : ''}; CPU ms per exchange ${JSON.stringify(r.cpu_ms_per_exchange ?? {})}`

export async function sendSection (ctx: BenchContext): Promise<void> {
  const s = ctx.profile.send
  const gw = ctx.system.gatewayUrl
  const need = Math.max(s.zeroUsers, s.slowUsers)
  if (ctx.users.length < need) {
    ctx.log(`send: creating ${need - ctx.users.length} more users`)
    ctx.users.push(...await createUsers(gw, need - ctx.users.length, 1_000_000))
  }

  // CPU per exchange of every process (the bench's own is the client plus the fake LLM).
  const pids = Object.fromEntries((['gateway', 'auth', 'chat', 'billing'] as const).map((p) => [p, ctx.system.procs.get(p)?.child?.pid]))
  const measured = async (users: number, seconds: number) => {
    const meter = cpuMeter({ ...pids, bench: process.pid })
    const run = await sendLoad(gw, ctx.users.slice(0, users), seconds, s.sessionLength)
    const used = meter()
    run.cpu_ms_per_exchange = Object.fromEntries(Object.entries(used).map(([k, v]) => [k, v === null || run.exchanges === 0 ? null : round(v / run.exchanges, 2)]))
    return run
  }
  // A real provider counts the tokens on its own machines; the fake one reports fixed usage so that its
  // tokenizing does not take CPU from the system under test (chat then stores provider usage, as in production).
  const usage = { prompt_tokens: 120, completion_tokens: 40 }
  ctx.sim.reset({ latencyMs: 0, usage })
  ctx.log('send: warm-up')
  await sendLoad(gw, ctx.users.slice(0, s.zeroUsers), s.warmupS, s.sessionLength)
  const zero = await measured(s.zeroUsers, s.zeroS)
  ctx.log(`send: zero-latency upstream, ${s.zeroUsers} users: ${fmt(zero)}`)

  ctx.sim.reset({ latencyMs: s.slowLatencyMs, usage })
  const slow = await measured(s.slowUsers, s.slowS)
  ctx.sim.reset()
  const ideal = s.slowUsers / (s.slowLatencyMs / 1000)
  ctx.log(`send: ${s.slowLatencyMs} ms upstream, ${s.slowUsers} users: ${fmt(slow)} (ideal ${ideal}/s)`)

  for (const [name, r] of [['zero-latency', zero], [`${s.slowLatencyMs} ms`, slow]] as const) {
    const failed = Object.values(r.failures).reduce((a, b) => a + b, 0)
    if (failed) ctx.results.notes.push(`send (${name} run): ${failed} exchanges failed: ${JSON.stringify(r.failures)} (status: count).`)
  }
  ctx.results.figures.push(
    { key: 'send_exchanges_per_s', label: `Send path, zero-latency upstream (${s.zeroUsers} users, one message in flight each)`, value: round(zero.per_s, 1), unit: '/s', baseline: `p50 ${zero.latency.p50.toFixed(1)} ms, p99 ${zero.latency.p99.toFixed(1)} ms` },
    { key: 'send_cpu_ms_per_exchange', label: 'CPU per exchange, all four processes (zero-latency run, from /proc)', value: round(['gateway', 'auth', 'chat', 'billing'].reduce((a, k) => a + (zero.cpu_ms_per_exchange?.[k] ?? 0), 0), 2), unit: 'ms', baseline: Object.entries(zero.cpu_ms_per_exchange ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') },
    { key: 'send_p50_ms', label: 'Send path p50 latency, zero-latency upstream', value: round(zero.latency.p50, 2), unit: 'ms' },
    { key: 'send_p99_ms', label: 'Send path p99 latency, zero-latency upstream', value: round(zero.latency.p99, 2), unit: 'ms' },
    { key: 'send_slow_upstream_ratio', label: `Send path with ${s.slowLatencyMs} ms upstream, ${s.slowUsers} users: throughput / (concurrency / latency)`, value: round(slow.per_s / ideal), unit: '×', baseline: `${slow.per_s.toFixed(1)}/s of an ideal ${ideal}/s; p50 ${slow.latency.p50.toFixed(1)} ms, p99 ${slow.latency.p99.toFixed(1)} ms`, target: { op: '>=', value: 0.9 } }
  )
  const out = (r: SendRun) => ({ exchanges: r.exchanges, seconds: round(r.seconds, 2), per_s: round(r.per_s, 1), latency_ms: Object.fromEntries(Object.entries(r.latency).map(([k, v]) => [k, round(v, 2)])), failures: r.failures, cpu_ms_per_exchange: r.cpu_ms_per_exchange })
  ctx.results.details.send = { zero_latency: { users: s.zeroUsers, ...out(zero) }, slow_upstream: { users: s.slowUsers, upstream_latency_ms: s.slowLatencyMs, ideal_per_s: ideal, ...out(slow) }, session_length: s.sessionLength }
}
