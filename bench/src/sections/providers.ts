// Provider selection: chat with CHAT_MODELS/CHAT_PROVIDERS, one provider (the fake LLM) against two providers whose
// first is down (a closed loopback port: connection refused) — with its circuit breaker open (the steady state of
// an outage), and with a breaker that never opens (every exchange tries the dead provider first, then fails over).
import { freePort } from '@chat-platform/platform/testing'
import type { BenchContext } from '../context.ts'
import { createUsers } from '../http.ts'
import { cpuMeter } from '../procs.ts'
import { round } from '../stats.ts'
import { pidOf, restartWith } from '../system-control.ts'
import { sendLoad, type SendRun } from './send.ts'

type Setup = 'one' | 'first_down_open' | 'first_down_every_call' | 'one_again'

export async function providersSection (ctx: BenchContext): Promise<void> {
  const p = ctx.profile.providers
  const gw = ctx.system.gatewayUrl
  const users = await createUsers(gw, p.users, 1_000_000)
  const model = 'gpt-4o-mini'
  // Billing prices with its own MODEL_PRICES (unset: ratios 1 and 1): the model is configured at the same ratios.
  const models = JSON.stringify([{ id: model, name: 'GPT-4o mini', input_ratio: 1, output_ratio: 1, default: true }])
  const sim = { name: 'fake', base_url: ctx.sim.url, api_key: 'bench-fake-key', models: [model] }
  const dead = { name: 'down', base_url: `http://127.0.0.1:${await freePort()}/v1`, api_key: 'bench-fake-key', models: [model] }
  // One provider before and after the two others (A B C A): the baseline is their mean, so a drift of the machine
  // during the section shows up in neither direction alone.
  const setups: Record<Setup, Record<string, string>> = {
    one: { CHAT_MODELS: models, CHAT_PROVIDERS: JSON.stringify([sim]) },
    first_down_open: { CHAT_MODELS: models, CHAT_PROVIDERS: JSON.stringify([dead, sim]), CHAT_BREAKER_FAILURES: '3', CHAT_BREAKER_COOLDOWN_MS: '600000' },
    first_down_every_call: { CHAT_MODELS: models, CHAT_PROVIDERS: JSON.stringify([dead, sim]), CHAT_BREAKER_FAILURES: '1000' },
    one_again: { CHAT_MODELS: models, CHAT_PROVIDERS: JSON.stringify([sim]) }
  }
  const runs: Partial<Record<Setup, SendRun & { chat_cpu_ms: number, sim_requests: number }>> = {}
  ctx.sim.reset({ latencyMs: 0, usage: { prompt_tokens: 120, completion_tokens: 40 } })
  try {
    for (const [setup, env] of Object.entries(setups) as [Setup, Record<string, string>][]) {
      ctx.log(`providers: chat restarted with ${setup}`)
      const restore = await restartWith(ctx, 'chat', env)
      try {
        // The warm-up also opens the dead provider's breaker where it can open.
        await sendLoad(gw, users, Math.min(2, p.seconds), 10)
        const simBefore = ctx.sim.requests.length
        const meter = cpuMeter({ chat: pidOf(ctx, 'chat') })
        const run = await sendLoad(gw, users, p.seconds, 10)
        const chat = meter().chat
        runs[setup] = { ...run, chat_cpu_ms: chat === null || run.exchanges === 0 ? Number.NaN : chat / run.exchanges, sim_requests: ctx.sim.requests.length - simBefore }
        ctx.log(`providers: ${setup}: ${run.exchanges} exchanges, ${run.per_s.toFixed(1)}/s, p50 ${run.latency.p50.toFixed(2)} ms, p99 ${run.latency.p99.toFixed(2)} ms, chat ${runs[setup]!.chat_cpu_ms.toFixed(2)} ms CPU each${Object.keys(run.failures).length ? `, failures ${JSON.stringify(run.failures)}` : ''}`)
        if (Object.keys(run.failures).length) ctx.results.notes.push(`providers (${setup}): exchanges failed: ${JSON.stringify(run.failures)}.`)
      } finally {
        await restore()
      }
    }
  } finally {
    ctx.sim.reset()
  }
  const open = runs.first_down_open!
  const every = runs.first_down_every_call!
  const [a, b] = [runs.one!, runs.one_again!]
  // The baseline: the mean of the two one-provider runs.
  const one = { ...a, chat_cpu_ms: (a.chat_cpu_ms + b.chat_cpu_ms) / 2, latency: { ...a.latency, p50: (a.latency.p50 + b.latency.p50) / 2, p99: (a.latency.p99 + b.latency.p99) / 2 } }
  ctx.results.figures.push(
    { key: 'providers_open_cpu_ratio', label: 'Chat CPU per exchange, 2 providers with the first down and its breaker open / 1 provider', value: round(open.chat_cpu_ms / one.chat_cpu_ms), unit: '×', baseline: `1 provider ${one.chat_cpu_ms.toFixed(2)} ms, breaker open ${open.chat_cpu_ms.toFixed(2)} ms, breaker never opening ${every.chat_cpu_ms.toFixed(2)} ms per exchange` },
    { key: 'providers_open_latency_added_ms', label: 'Send p50 added by a down first provider with its breaker open', value: round(open.latency.p50 - one.latency.p50), unit: 'ms', baseline: `1 provider p50 ${one.latency.p50.toFixed(2)} ms, breaker open ${open.latency.p50.toFixed(2)} ms` },
    { key: 'providers_failover_latency_added_ms', label: 'Send p50 added when every exchange first tries the down provider (connection refused) and fails over', value: round(every.latency.p50 - one.latency.p50), unit: 'ms', baseline: `1 provider p50 ${one.latency.p50.toFixed(2)} ms, failing over ${every.latency.p50.toFixed(2)} ms` }
  )
  const out = (r: typeof one) => ({ exchanges: r.exchanges, per_s: round(r.per_s, 1), p50_ms: round(r.latency.p50, 2), p99_ms: round(r.latency.p99, 2), chat_cpu_ms_per_exchange: round(r.chat_cpu_ms, 3), fake_llm_requests: r.sim_requests, failures: r.failures })
  ctx.results.details.providers = {
    method: `${p.users} users, one message in flight each, ${p.seconds} s per setup after a warm-up, one setup after the other (each needs a chat restart), one provider first and last (the baseline is their mean); the down provider is a closed loopback port (refused at once: a provider that hangs until its connect timeout costs far more)`,
    one: out(a),
    one_again: out(b),
    first_down_open: out(open),
    first_down_every_call: out(every)
  }
}
