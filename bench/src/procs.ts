// Process helpers: CPU pinning with taskset, resident memory from /proc, Node children that run TypeScript.
import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const TSX_LOADER = fileURLToPath(import.meta.resolve('tsx'))
export const BENCH_DIR = fileURLToPath(new URL('../', import.meta.url))
export const ROOT_DIR = fileURLToPath(new URL('../../', import.meta.url))

let tasksetOk: boolean | undefined
/** taskset exists and this machine has at least two cores (pinning one side per core). */
export async function canPin (): Promise<boolean> {
  if (tasksetOk === undefined) {
    tasksetOk = cpus().length >= 2 && await run('taskset', ['-p', String(process.pid)]).then(() => true, () => false)
  }
  return tasksetOk
}

/** Pins every thread of `pid` to the given CPU list ("0", "0-1"); a no-op where taskset is missing. */
export async function pin (pid: number | undefined, cpuList: string): Promise<void> {
  if (pid === undefined || !(await canPin())) return
  await run('taskset', ['-a', '-p', '-c', cpuList, String(pid)])
}

export const allCpus = () => `0-${cpus().length - 1}`

export interface Rss { rss_mb: number, peak_mb: number, heap_used_mb?: number }

/** Resident set (VmRSS) and its high-water mark (VmHWM) of a live process, in MiB. */
export function rssOf (pid: number | undefined): Rss | null {
  if (pid === undefined) return null
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? Number.NaN)
    return { rss_mb: kb('VmRSS') / 1024, peak_mb: kb('VmHWM') / 1024 }
  } catch {
    return null
  }
}

/** Starts `node --import tsx <file>`, optionally pinned to `cpuList`, with an IPC channel when asked. */
export function spawnTs (file: string, opts: { env?: Record<string, string>, cpuList?: string, ipc?: boolean, pinned: boolean }): ChildProcess {
  const args = ['--import', TSX_LOADER, file]
  const stdio: StdioOptions = opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe']
  const env = { ...process.env, ...opts.env }
  if (opts.cpuList && opts.pinned) return spawn('taskset', ['-c', opts.cpuList, process.execPath, ...args], { env, stdio })
  return spawn(process.execPath, args, { env, stdio })
}

/** V8 heap in use, from the process's Prometheus /metrics (prom-client default metrics), in MiB. */
export async function heapUsedOf (baseUrl: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${baseUrl}/metrics`)
    const m = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})?\s+([0-9.e+]+)/m.exec(await res.text())
    return m ? Number(m[1]) / 2 ** 20 : undefined
  } catch {
    return undefined
  }
}

const TICKS_PER_S = 100

/** CPU time (user + system, every thread) a live process has used so far, in ms; null when it is gone. */
export function cpuMsOf (pid: number | undefined): number | null {
  if (pid === undefined) return null
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S
  } catch {
    return null
  }
}

/** CPU used by each named process between two calls: `const stop = cpuMeter(pids); …; stop()` → ms per process. */
export function cpuMeter (pids: Record<string, number | undefined>): () => Record<string, number | null> {
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMsOf(pid)]))
  return () => Object.fromEntries(Object.entries(pids).map(([k, pid]) => {
    const a = start[k]
    const b = cpuMsOf(pid)
    return [k, a === null || b === null ? null : b - a]
  }))
}
