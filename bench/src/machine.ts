// What the run happened on: cores, CPU model, Node version, kernel, load before and after.
import { cpus, loadavg, release, totalmem } from 'node:os'
import { readFileSync } from 'node:fs'

export interface Machine { cores: number, cpu_model: string, node: string, kernel: string, memory_gb: number, loadavg_start: number[], loadavg_end?: number[] }

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

export const machineLine = (m: Machine) =>
  `${m.cores} cores, ${m.cpu_model}, ${m.memory_gb} GiB, Node ${m.node}, Linux ${m.kernel}; load average ${m.loadavg_start.join(' ')} at start${m.loadavg_end ? `, ${m.loadavg_end.join(' ')} at end` : ''}`
