// `pnpm bench [--quick] [--only gateway,send,stream,usage,replay,admission,revocation,providers,callbacks,curves] [--cpu-prof gateway,chat,…]`: starts the real
// system on a fresh database with a fake OpenAI upstream, measures each figure against a baseline from the
// same run, prints a Markdown table and writes bench/results/latest.json.
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem, type ProcName } from '@chat-platform/e2e/support/system.ts'
import { waitFor } from '@chat-platform/platform/testing'
import type { BenchContext, Results } from './src/context.ts'
import { createUsers } from './src/http.ts'
import { cpuTicks, describeMachine, loopbackRtt, machineLine, stealPct } from './src/machine.ts'
import { canPin, BENCH_DIR, heapUsedOf, rssOf } from './src/procs.ts'
import { FULL, QUICK } from './src/profile.ts'
import { json, markdown, type Memory } from './src/report.ts'
import { round, sleep } from './src/stats.ts'
import { Teardowns } from './src/teardown.ts'
import { gatewaySection } from './src/sections/gateway.ts'
import { sendSection } from './src/sections/send.ts'
import { streamSection } from './src/sections/stream.ts'
import { usageSection } from './src/sections/usage.ts'
import { replaySection } from './src/sections/replay.ts'
import { admissionSection } from './src/sections/admission.ts'
import { revocationSection } from './src/sections/revocation.ts'
import { providersSection } from './src/sections/providers.ts'
import { callbacksSection } from './src/sections/callbacks.ts'
import { curvesSection } from './src/sections/curves.ts'
import { helloRss } from './src/sections/memory-reference.ts'
import { summarizeProfile } from './src/cpu-profile-summary.ts'

const SECTIONS = {
  gateway: gatewaySection,
  send: sendSection,
  stream: streamSection,
  usage: usageSection,
  replay: replaySection,
  admission: admissionSection,
  revocation: revocationSection,
  providers: providersSection,
  callbacks: callbacksSection,
  curves: curvesSection
}
type SectionName = keyof typeof SECTIONS
const PROCS: ProcName[] = ['gateway', 'auth', 'chat', 'billing']

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, 'cpu-prof': { type: 'string' } },
  strict: true
})
const only = values.only ? values.only.split(',').map((s) => s.trim()) : Object.keys(SECTIONS)
for (const s of only) if (!(s in SECTIONS)) throw new Error(`--only: unknown section ${s} (one of ${Object.keys(SECTIONS).join(', ')})`)
const profiled = values['cpu-prof'] === undefined ? [] : values['cpu-prof'] === '' || values['cpu-prof'] === 'all' ? PROCS : values['cpu-prof'].split(',') as ProcName[]
const profile = values.quick ? QUICK : FULL
const resultsDir = join(BENCH_DIR, 'results')
const log = (line: string) => process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(1).padStart(5)}s] ${line}\n`)

const teardowns = new Teardowns()
let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true
    log(`${signal}: stopping the system and cleaning up`)
    teardowns.run().finally(() => process.exit(130))
  })
}

async function main (): Promise<number> {
  const started = performance.now()
  const startedAt = Date.now()
  const machine = describeMachine()
  machine.loopback_rtt = await loopbackRtt()
  const ticksAtStart = cpuTicks()
  log(`${values.quick ? 'quick' : 'full'} run on ${machineLine(machine)}`)
  const sim = await startSimulator({ latencyMs: 0 })
  teardowns.teardown(() => sim.close())
  const profDir = join(resultsDir, 'cpu-prof')
  if (profiled.length) mkdirSync(profDir, { recursive: true })
  const system = await startSystem(teardowns, {
    // What production runs: the bundles of scripts/build.mjs under plain node, not the tsx loader.
    runtime: 'dist',
    env: {
      OPENAI_BASE_URL: sim.url,
      OPENAI_API_KEY: 'bench-fake-key',
      // The benchmark is one client hammering from one address: limits would measure themselves.
      RATE_LIMIT_MAX: '1000000000',
      AUTH_RATE_LIMIT_MAX: '1000000',
      RECHARGE_POLICY: 'self',
      // The usage section publishes events for synthetic users auth never registered: with the check on,
      // billing would set them all aside as unknown users instead of applying them.
      BILLING_CHECK_USERS: 'false'
    },
    procEnv: Object.fromEntries(profiled.map((p) => [p, {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${join(BENCH_DIR, 'src/cpu-profile-hook.mjs')}`.trim(),
      BENCH_CPU_PROF_DIR: profDir,
      BENCH_CPU_PROF_NAME: p
    }]))
  })
  log(`system up (gateway ${system.gatewayUrl}), namespace ${system.env.EVENTS_NAMESPACE}`)

  const results: Results = { figures: [], curves: [], details: {}, notes: [] }
  const ctx: BenchContext = { profile, system, sim, teardowns, results, extraProcs: new Map(), users: [], pinned: await canPin(), log }
  if (!ctx.pinned) results.notes.push('taskset is unavailable (or fewer than 2 cores): servers and load generator were not pinned.')

  // Idle memory: after start-up has settled (V8 shrinks the heap a few seconds after the start-up burst), before any request.
  await sleep(values.quick ? 500 : 10_000)
  const memory: Memory = {}
  const measure = async (p: ProcName) => {
    const r = rssOf(system.procs.get(p)?.child?.pid)
    if (r) r.heap_used_mb = await heapUsedOf(system.url(p))
    return r
  }
  for (const p of PROCS) memory[p] = { idle: await measure(p), after_load: null }
  const hello = await helloRss(values.quick ? 500 : 3_000)
  memory['fastify hello-world (plain node)'] = { idle: hello.plain, after_load: null }
  memory['fastify hello-world (tsx loader)'] = { idle: hello.tsx, after_load: null }

  const need = Math.max(1, ...(only.includes('send') ? [profile.send.zeroUsers, profile.send.slowUsers] : []))
  log(`creating ${need} users (register, login, recharge through the gateway)`)
  ctx.users.push(...await createUsers(system.gatewayUrl, need, 1_000_000))

  // Profiles cover the measured sections only (not start-up): SIGWINCH starts them, a second one writes them.
  const toggleProfilers = () => { for (const p of profiled) system.procs.get(p)?.child?.kill('SIGWINCH') }
  toggleProfilers()
  let failed = 0
  for (const name of only as SectionName[]) {
    if (interrupted) break
    log(`— ${name}`)
    const ticks = cpuTicks()
    try {
      await SECTIONS[name](ctx)
      ;(machine.steal_pct_by_section ??= {})[name] = stealPct(ticks, cpuTicks())
      if (name === 'gateway') { const mp = ctx.extraProcs.get('minimal-proxy'); memory['minimal-proxy'] = { idle: null, after_load: rssOf(mp?.pid) } }
    } catch (err) {
      failed++
      log(`${name} failed: ${(err as Error).stack ?? err}`)
      results.notes.push(`${name}: FAILED: ${(err as Error).message.split('\n')[0]}`)
    }
  }
  for (const p of PROCS) memory[p].after_load = await measure(p)
  if (profiled.length) {
    toggleProfilers()
    const files = await waitFor<string[] | null>(() => {
      const found = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile') && statSync(join(profDir, f)).mtimeMs > startedAt)
      return found.length >= profiled.length ? found : null
    }, { timeoutMs: 30_000, what: 'CPU profiles' }).catch(() => [])
    for (const f of files ?? []) log(summarizeProfile(join(profDir, f)))
  }
  for (const m of Object.values(memory)) {
    for (const r of [m.idle, m.after_load]) if (r) { r.rss_mb = round(r.rss_mb, 1)!; r.peak_mb = round(r.peak_mb, 1)!; r.heap_used_mb = round(r.heap_used_mb, 1) ?? undefined }
  }

  machine.loadavg_end = loadavg().map((l) => Math.round(l * 100) / 100)
  machine.steal_pct = stealPct(ticksAtStart, cpuTicks())
  const seconds = (performance.now() - started) / 1000
  const table = markdown(results, memory, machine, profile.quick, seconds)
  process.stdout.write(`${table}\n`)
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(join(resultsDir, 'latest.json'), JSON.stringify(json(results, memory, machine, profile.quick, seconds), null, 2) + '\n')
  log(`wrote ${join(resultsDir, 'latest.json')}`)
  return failed ? 1 : 0
}

let code = 1
try {
  code = await main()
} catch (err) {
  log(`failed: ${(err as Error).stack ?? err}`)
} finally {
  if (!interrupted) {
    log('stopping the system')
    await teardowns.run()
  }
}
process.exit(code)
