// Replay: `pnpm ops billing:replay --from-seq 1` over events billing has already applied, as a child process.
import { spawn } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import type { BenchContext } from '../context.ts'
import { ROOT_DIR } from '../procs.ts'
import { round } from '../stats.ts'

async function runOps (ctx: BenchContext, args: string[]): Promise<{ seconds: number, stdout: string }> {
  const t0 = performance.now()
  const child = spawn('pnpm', ['--silent', 'ops', ...args], { cwd: ROOT_DIR, env: { ...process.env, ...ctx.system.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  const seconds = (performance.now() - t0) / 1000
  if (code !== 0) throw new Error(`pnpm ops ${args.join(' ')} exited with ${code}: ${stderr.slice(-2000)}`)
  return { seconds, stdout }
}

export async function replaySection (ctx: BenchContext): Promise<void> {
  // The same command with nothing to read: what starting the process and connecting costs.
  const idle = await runOps(ctx, ['billing:replay', '--from-seq', String(Number.MAX_SAFE_INTEGER)])
  ctx.log('replay: replaying the whole CHAT_USAGE stream')
  const full = await runOps(ctx, ['billing:replay', '--from-seq', '1'])
  const m = /applied (\d+), already applied (\d+), rejected (\d+) \(read (\d+) events/.exec(full.stdout)
  if (!m) throw new Error(`unexpected billing:replay output: ${full.stdout}`)
  const [applied, already, rejected, read] = m.slice(1, 5).map(Number)
  // With few events the reading hides in start-up's noise (the idle run may take longer than the full one):
  // then there is no rate to report, only the one including start-up.
  const work = full.seconds - idle.seconds
  const perS = work >= 0.2 ? read / work : null
  if (perS === null) ctx.results.notes.push(`replay: reading ${read} events took less than start-up's noise (${full.seconds.toFixed(2)} s with start-up, ${idle.seconds.toFixed(2)} s without events); no rate without start-up.`)
  ctx.log(`replay: read ${read} (applied ${applied}, already applied ${already}, rejected ${rejected}) in ${full.seconds.toFixed(2)} s, of which ${idle.seconds.toFixed(2)} s start-up → ${perS === null ? 'n/a' : Math.round(perS)}/s`)
  if (applied > 0) ctx.results.notes.push(`replay: ${applied} events were applied by the replay although billing had applied everything before it (should be 0).`)
  ctx.results.figures.push({
    key: 'replay_events_per_s',
    label: 'billing:replay over already-applied events (process start-up excluded)',
    value: perS === null ? null : round(perS, 0),
    unit: '/s',
    baseline: `${read} events in ${full.seconds.toFixed(2)} s wall, ${idle.seconds.toFixed(2)} s of it start-up; ${round(read / full.seconds, 0)}/s including start-up`
  })
  ctx.results.details.replay = { read, applied, already_applied: already, rejected, wall_seconds: round(full.seconds, 2), startup_seconds: round(idle.seconds, 2), events_per_s_including_startup: round(read / full.seconds, 0), output: full.stdout.trim() }
}
