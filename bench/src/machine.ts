// What the run happened on: cores, CPU model, Node version, kernel, load before and after, and how long one
// process takes to answer another over loopback (every hop of the system pays it).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { median, round } from './stats.ts'

/** Round trips of one byte to an echo server in another process (µs, medians): back to back, and each after an idle pause. */
export interface LoopbackRtt { busy_us: number | null, from_idle_us: number | null }

export interface Machine { cores: number, cpu_model: string, node: string, kernel: string, memory_gb: number, loadavg_start: number[], loadavg_end?: number[], loopback_rtt?: LoopbackRtt, steal_pct?: number | null, steal_pct_by_section?: Record<string, number | null> }

/** The machine's CPU time counters so far (clock ticks, all cores): total, and stolen by the hypervisor. */
export function cpuTicks (): { total: number, steal: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already counted in user.
    return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), steal: f[7] ?? 0 }
  } catch {
    return null
  }
}

/** The share of the machine's CPU time the hypervisor took between two readings of cpuTicks (%). */
export function stealPct (from: ReturnType<typeof cpuTicks>, to: ReturnType<typeof cpuTicks>): number | null {
  if (!from || !to || to.total <= from.total) return null
  return round((100 * (to.steal - from.steal)) / (to.total - from.total), 2)
}

function cpuModel (): string {
  const fromOs = cpus()[0]?.model?.trim()
  if (fromOs && fromOs !== 'unknown') return fromOs
  try { return /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown' } catch { return 'unknown' }
}

export function describeMachine (): Machine {
  return {
    cores: cpus().length,
    cpu_model: cpuModel(),
    node: process.version,
    kernel: release(),
    memory_gb: Math.round(totalmem() / 2 ** 30),
    loadavg_start: loadavg().map((l) => Math.round(l * 100) / 100)
  }
}

const ECHO = `const s = require('node:net').createServer((c) => { c.setNoDelay(true); c.on('data', (d) => c.write(d)) })
s.listen(0, '127.0.0.1', () => process.send(s.address().port))
process.on('disconnect', () => process.exit(0))`

/**
 * The loopback round trip between two processes: `busy` back to back (both stay awake), `from_idle` each after a
 * pause that lets the cores go idle, as the system's hops do when one exchange at a time flows through it
 * (stream_ttfb's path has eight such hops). Measured before the system starts, with nothing else running.
 */
export async function loopbackRtt (rounds = 200, pauseMs = 3): Promise<LoopbackRtt> {
  const child = spawn(process.execPath, ['-e', ECHO], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  try {
    const [port] = await Promise.race([
      once(child, 'message') as Promise<[number]>,
      once(child, 'exit').then(([code]) => { throw new Error(`the loopback echo server exited with ${code}`) })
    ])
    const socket = connect(port, '127.0.0.1')
    socket.setNoDelay(true)
    await once(socket, 'connect')
    const ping = async () => {
      const t0 = performance.now()
      socket.write('x')
      await once(socket, 'data')
      return (performance.now() - t0) * 1000
    }
    for (let i = 0; i < 50; i++) await ping()
    const busy: number[] = []
    for (let i = 0; i < rounds; i++) busy.push(await ping())
    const idle: number[] = []
    for (let i = 0; i < rounds; i++) {
      await sleep(pauseMs)
      idle.push(await ping())
    }
    socket.destroy()
    return { busy_us: round(median(busy), 1), from_idle_us: round(median(idle), 1) }
  } finally {
    child.kill()
  }
}

export const machineLine = (m: Machine) =>
  `${m.cores} cores, ${m.cpu_model}, ${m.memory_gb} GiB, Node ${m.node}, Linux ${m.kernel}; load average ${m.loadavg_start.join(' ')} at start${m.loadavg_end ? `, ${m.loadavg_end.join(' ')} at end` : ''}` +
  (m.loopback_rtt ? `; loopback round trip between two processes ${m.loopback_rtt.busy_us} µs back to back, ${m.loopback_rtt.from_idle_us} µs from idle` : '') +
  (m.steal_pct !== undefined && m.steal_pct !== null ? `; CPU time stolen by the hypervisor during the run ${m.steal_pct} %` : '')
