// Gateway cost: GET /api/user/balance through the gateway vs straight to billing vs a minimal proxy, interleaved.
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { BenchContext } from '../context.ts'
import { LoadGenerator } from '../load-client.ts'
import { allCpus, cpuMeter, pin, spawnTs } from '../procs.ts'
import { startExtraGateway, startTrivialUpstream } from '../extra-procs.ts'
import { median, round } from '../stats.ts'
import type { LatencyResult, ThroughputResult } from '../load-worker.ts'

type Target = 'direct' | 'minimal' | 'gateway'
const TARGETS: Target[] = ['direct', 'minimal', 'gateway']

async function startMinimalProxy (ctx: BenchContext, upstream: string, name: string): Promise<string> {
  const child = spawnTs(fileURLToPath(new URL('../minimal-proxy.ts', import.meta.url)), { env: { UPSTREAM: upstream, PORT: '0' }, ipc: true, pinned: false })
  ctx.extraProcs.set(name, child)
  let output = ''
  child.stderr!.on('data', (b: Buffer) => { output += b.toString() })
  child.stdout!.resume()
  ctx.teardowns.teardown(async () => {
    if (child.exitCode !== null) return
    child.kill('SIGTERM')
    await once(child, 'exit')
  })
  const [msg] = await Promise.race([
    once(child, 'message') as Promise<[{ address: string }]>,
    once(child, 'exit').then(() => { throw new Error(`minimal proxy exited: ${output}`) })
  ])
  return msg.address
}

const ms = (v: number | null) => v === null || !Number.isFinite(v) ? 'n/a' : v.toFixed(3)

/** Rotates the order each round so drift on the machine hits every configuration alike. */
const orderFor = (round: number) => TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length])

export async function gatewaySection (ctx: BenchContext): Promise<void> {
  const g = ctx.profile.gateway
  const { system } = ctx
  const minimal = await startMinimalProxy(ctx, system.url('billing'), 'minimal-proxy')
  const path = '/api/user/balance'
  const url: Record<Target, string> = { direct: system.url('billing') + path, minimal: minimal + path, gateway: system.gatewayUrl + path }
  const headers = { authorization: `Bearer ${ctx.users[0].token}` }

  // Servers share core 0, the load generator has core 1 (perf-baselines' method): a ratio is then "of one core".
  const serverPids = [system.procs.get('gateway')!.child!.pid, system.procs.get('billing')!.child!.pid, ctx.extraProcs.get('minimal-proxy')!.pid]
  for (const pid of serverPids) await pin(pid, '0')
  // CPU time per request of each server process, read from /proc around every throughput run: unlike a
  // rate, it hardly moves when other work on the machine takes the core away.
  const pidOf = (name: 'gateway' | 'billing') => system.procs.get(name)!.child!.pid
  const servers: Record<Target, Record<string, number | undefined>> = {
    direct: { billing: pidOf('billing') },
    minimal: { proxy: ctx.extraProcs.get('minimal-proxy')!.pid, billing: pidOf('billing') },
    gateway: { proxy: pidOf('gateway'), billing: pidOf('billing') }
  }
  const cpu: Record<Target, Record<string, number>[]> = { direct: [], minimal: [], gateway: [] }
  const load = new LoadGenerator({ cpuList: '1', pinned: ctx.pinned })
  const tp: Record<Target, ThroughputResult[]> = { direct: [], minimal: [], gateway: [] }
  const idle: Record<Target, LatencyResult[]> = { direct: [], minimal: [], gateway: [] }
  const rated: Record<Target, LatencyResult[]> = { direct: [], minimal: [], gateway: [] }
  try {
    for (const t of TARGETS) {
      ctx.log(`gateway: warm-up ${t}`)
      await load.throughput({ url: url[t], headers, connections: g.connections, durationS: g.warmupS })
    }
    for (let r = 0; r < g.rounds; r++) {
      for (const t of orderFor(r)) {
        const meter = cpuMeter(servers[t])
        const res = await load.throughput({ url: url[t], headers, connections: g.connections, durationS: g.throughputS })
        const used = meter()
        cpu[t].push(Object.fromEntries(Object.entries(used).map(([k, v]) => [k, v === null || res.ok === 0 ? Number.NaN : (v * 1000) / res.ok])))
        ctx.log(`gateway: round ${r + 1} throughput ${t} ${Math.round(res.rps)} req/s (p50 ${res.p50_ms} ms, p99 ${res.p99_ms} ms${res.non2xx || res.errors ? `, ${res.non2xx} non-2xx, ${res.errors} errors` : ''})`)
        tp[t].push(res)
      }
      for (const t of orderFor(r)) {
        const res = await load.latency({ url: url[t], headers, connections: 1, durationS: g.latencyS })
        ctx.log(`gateway: round ${r + 1} unloaded ${t} p50 ${ms(res.latency.p50)} ms, p99 ${ms(res.latency.p99)} ms (n=${res.latency.n})`)
        idle[t].push(res)
      }
      for (const t of orderFor(r)) {
        const res = await load.latency({ url: url[t], headers, connections: g.rateConnections, durationS: g.rateS, rate: g.rate })
        ctx.log(`gateway: round ${r + 1} at ${g.rate} req/s ${t} p50 ${ms(res.latency.p50)} ms, p99 ${ms(res.latency.p99)} ms (${Math.round(res.achieved_rps)} req/s${res.skipped ? `, ${res.skipped} skipped` : ''})`)
        rated[t].push(res)
      }
    }
  } finally {
    await load.close()
    for (const pid of serverPids) await pin(pid, allCpus()).catch(() => {})
  }

  // Ratios and differences are taken within a round (same conditions), then the median over rounds.
  const perRound = <T>(fn: (r: number) => T) => Array.from({ length: g.rounds }, (_, r) => fn(r))
  const tpRatio = (a: Target, b: Target) => median(perRound((r) => tp[a][r].rps / tp[b][r].rps))
  const added = (set: Record<Target, LatencyResult[]>, t: Target, p: 'p50' | 'p99') => median(perRound((r) => set[t][r].latency[p] - set.direct[r].latency[p]))
  const failures = TARGETS.flatMap((t) => [...tp[t], ...idle[t], ...rated[t]].map((x) => x.non2xx + x.errors)).reduce((a, b) => a + b, 0)
  const short = TARGETS.filter((t) => rated[t].some((x) => x.achieved_rps < 0.95 * g.rate || x.skipped > 0))
  if (short.length) ctx.results.notes.push(`gateway: ${short.join(', ')} could not sustain ${g.rate} req/s in some round (the fixed-rate latencies include queueing; requests past one second of backlog were skipped).`)
  if (failures > 0) ctx.results.notes.push(`gateway: ${failures} requests failed or answered non-2xx during the runs (see details.gateway).`)

  const cpuUs = (t: Target, k: string) => median(cpu[t].map((x) => x[k]).filter(Number.isFinite))
  ctx.results.figures.push(
    { key: 'gateway_throughput_ratio', label: 'Gateway throughput / direct to billing', value: round(tpRatio('gateway', 'direct')), unit: '×', baseline: `direct ${Math.round(median(tp.direct.map((x) => x.rps)))} req/s (one core; a bare Node hop keeps ≈0.2)` },
    { key: 'gateway_vs_minimal_proxy_ratio', label: 'Gateway throughput / minimal proxy', value: round(tpRatio('gateway', 'minimal')), unit: '×', baseline: `minimal proxy ${Math.round(median(tp.minimal.map((x) => x.rps)))} req/s, gateway ${Math.round(median(tp.gateway.map((x) => x.rps)))} req/s`, target: { op: '>=', value: 0.85 } },
    { key: 'gateway_cpu_vs_minimal_proxy', label: 'Gateway process CPU per request / minimal proxy\'s (from /proc, robust to noise)', value: round(cpuUs('gateway', 'proxy') / cpuUs('minimal', 'proxy')), unit: '×', baseline: `gateway ${Math.round(cpuUs('gateway', 'proxy'))} µs, minimal proxy ${Math.round(cpuUs('minimal', 'proxy'))} µs, billing ${Math.round(cpuUs('direct', 'billing'))} µs per request` },
    { key: 'gateway_p50_added_ms', label: 'Gateway added p50 latency, unloaded (1 connection)', value: round(added(idle, 'gateway', 'p50')), unit: 'ms', baseline: `direct p50 ${median(idle.direct.map((x) => x.latency.p50)).toFixed(3)} ms; minimal proxy adds ${added(idle, 'minimal', 'p50').toFixed(3)} ms`, target: { op: '<=', value: 0.5 } },
    { key: 'gateway_p99_added_ms', label: `Gateway added p99 latency at ${g.rate} req/s`, value: round(added(rated, 'gateway', 'p99')), unit: 'ms', baseline: `direct p99 ${median(rated.direct.map((x) => x.latency.p99)).toFixed(3)} ms; minimal proxy adds ${added(rated, 'minimal', 'p99').toFixed(3)} ms`, target: { op: '<=', value: 2 } }
  )
  ctx.results.details.gateway = {
    method: `servers (gateway, billing, minimal proxy) pinned to CPU 0, load generator to CPU 1: ${ctx.pinned}; ${g.rounds} interleaved rounds; throughput autocannon -c ${g.connections} for ${g.throughputS} s; unloaded: 1 connection for ${g.latencyS} s; fixed rate ${g.rate} req/s on ${g.rateConnections} connections for ${g.rateS} s; latencies timed per response as floats`,
    throughput_rps: Object.fromEntries(TARGETS.map((t) => [t, tp[t].map((x) => round(x.rps, 0))])),
    throughput_ratio_minimal_vs_direct: round(tpRatio('minimal', 'direct')),
    cpu_us_per_request: Object.fromEntries(TARGETS.map((t) => [t, cpu[t].map((x) => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, round(v, 0)])))])),
    unloaded: Object.fromEntries(TARGETS.map((t) => [t, idle[t].map((x) => ({ p50: round(x.latency.p50), p99: round(x.latency.p99), n: x.latency.n }))])),
    unloaded_added_ms: { gateway_p50: round(added(idle, 'gateway', 'p50')), gateway_p99: round(added(idle, 'gateway', 'p99')), minimal_p50: round(added(idle, 'minimal', 'p50')), minimal_p99: round(added(idle, 'minimal', 'p99')) },
    [`at_${g.rate}_rps`]: Object.fromEntries(TARGETS.map((t) => [t, rated[t].map((x) => ({ p50: round(x.latency.p50), p99: round(x.latency.p99), achieved_rps: round(x.achieved_rps, 0), skipped: x.skipped }))])),
    [`at_${g.rate}_rps_added_ms`]: { gateway_p50: round(added(rated, 'gateway', 'p50')), gateway_p99: round(added(rated, 'gateway', 'p99')), minimal_p50: round(added(rated, 'minimal', 'p50')), minimal_p99: round(added(rated, 'minimal', 'p99')) },
    failures
  }
  await ownCost(ctx)
}

/**
 * The gateway's own CPU per request, apart from billing: another gateway process and another minimal proxy, both in
 * front of a trivial upstream (a bare node:http server) instead of billing, loaded in turn. With billing behind them on
 * the same core, each proxy's CPU per request also carries how the two processes' wake-ups interleave; here it is
 * (nearly) only the proxy's own work. Reported beside the targets, not as one.
 */
async function ownCost (ctx: BenchContext): Promise<void> {
  const g = ctx.profile.gateway
  const trivial = await startTrivialUpstream(ctx)
  const [gw, minimal] = await Promise.all([
    startExtraGateway(ctx, { BILLING_URL: trivial.url }),
    startMinimalProxy(ctx, trivial.url, 'minimal-proxy-trivial')
  ])
  const pids = { gateway: gw.child.pid, minimal: ctx.extraProcs.get('minimal-proxy-trivial')!.pid }
  for (const pid of [trivial.child.pid, pids.gateway, pids.minimal]) await pin(pid, '0')
  const path = '/api/user/balance'
  const url = { gateway: gw.url + path, minimal: minimal + path }
  const headers = { authorization: `Bearer ${ctx.users[0].token}` }
  const cpu: Record<'gateway' | 'minimal', number[]> = { gateway: [], minimal: [] }
  const rps: Record<'gateway' | 'minimal', number[]> = { gateway: [], minimal: [] }
  const load = new LoadGenerator({ cpuList: '1', pinned: ctx.pinned })
  try {
    for (const t of ['gateway', 'minimal'] as const) await load.throughput({ url: url[t], headers, connections: g.connections, durationS: g.warmupS })
    for (let r = 0; r < g.rounds; r++) {
      for (const t of (r % 2 ? ['minimal', 'gateway'] : ['gateway', 'minimal']) as ('gateway' | 'minimal')[]) {
        const meter = cpuMeter({ proxy: pids[t] })
        const res = await load.throughput({ url: url[t], headers, connections: g.connections, durationS: g.throughputS })
        const used = meter().proxy
        if (res.non2xx || res.errors) throw new Error(`${t} in front of the trivial upstream: ${res.non2xx} non-2xx, ${res.errors} errors`)
        cpu[t].push(used === null ? Number.NaN : (used * 1000) / res.ok)
        rps[t].push(res.rps)
        ctx.log(`gateway: own cost round ${r + 1} ${t} ${Math.round(res.rps)} req/s, ${cpu[t].at(-1)!.toFixed(1)} µs CPU per request`)
      }
    }
  } finally {
    await load.close()
  }
  const perRound = (fn: (r: number) => number) => median(Array.from({ length: g.rounds }, (_, r) => fn(r)))
  const cpuRatio = perRound((r) => cpu.gateway[r] / cpu.minimal[r])
  ctx.results.figures.push({
    key: 'gateway_own_cpu_vs_minimal_proxy',
    label: 'Gateway process CPU per request / minimal proxy\'s, both in front of a trivial upstream',
    value: round(cpuRatio),
    unit: '×',
    baseline: `gateway ${Math.round(median(cpu.gateway))} µs, minimal proxy ${Math.round(median(cpu.minimal))} µs per request; throughput ratio ${perRound((r) => rps.gateway[r] / rps.minimal[r]).toFixed(3)}`
  })
  ctx.results.details.gateway_own_cost = {
    method: `another gateway and another minimal proxy in front of a bare node:http upstream, all three pinned to CPU 0; ${g.rounds} interleaved rounds of ${g.throughputS} s at ${g.connections} connections`,
    cpu_us_per_request: { gateway: cpu.gateway.map((x) => round(x, 1)), minimal: cpu.minimal.map((x) => round(x, 1)) },
    throughput_rps: { gateway: rps.gateway.map((x) => round(x, 0)), minimal: rps.minimal.map((x) => round(x, 0)) }
  }
}
