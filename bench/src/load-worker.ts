// The load generator, a separate process (pinned to its own core): autocannon for throughput, an undici
// client timing every response as a float for latency (autocannon's histogram rounds to whole ms).
import { performance } from 'node:perf_hooks'
import autocannon from 'autocannon'
import { Pool } from 'undici'
import { summarize, type LatencySummary } from './stats.ts'

export type LoadJob =
  | { kind: 'throughput', url: string, headers: Record<string, string>, connections: number, durationS: number }
  | { kind: 'latency', url: string, headers: Record<string, string>, connections: number, durationS: number, rate?: number }

export interface ThroughputResult { rps: number, ok: number, non2xx: number, errors: number, p50_ms: number, p99_ms: number }
export interface LatencyResult { latency: LatencySummary, ok: number, non2xx: number, errors: number, skipped: number, achieved_rps: number }

async function throughput (job: Extract<LoadJob, { kind: 'throughput' }>): Promise<ThroughputResult> {
  const r = await autocannon({ url: job.url, headers: job.headers, connections: job.connections, duration: job.durationS, pipelining: 1 })
  const ok = r['2xx']
  return { rps: ok / r.duration, ok, non2xx: r.non2xx, errors: r.errors + r.timeouts, p50_ms: r.latency.p50, p99_ms: r.latency.p99 }
}

async function latency (job: Extract<LoadJob, { kind: 'latency' }>): Promise<LatencyResult> {
  const url = new URL(job.url)
  const pool = new Pool(url.origin, { connections: job.connections, pipelining: 1 })
  const path = url.pathname + url.search
  const samples: number[] = []
  let ok = 0
  let non2xx = 0
  let errors = 0
  let skipped = 0
  const once = async () => {
    const t0 = performance.now()
    try {
      const res = await pool.request({ path, method: 'GET', headers: job.headers })
      await res.body.dump()
      samples.push(performance.now() - t0)
      if (res.statusCode >= 200 && res.statusCode < 300) ok++
      else non2xx++
    } catch {
      errors++
    }
  }
  const start = performance.now()
  const end = start + job.durationS * 1000
  try {
    if (job.rate === undefined) {
      // Closed loop: each connection sends its next request when the last one is answered.
      await Promise.all(Array.from({ length: job.connections }, async () => { while (performance.now() < end) await once() }))
    } else {
      // Open loop at a fixed rate: every millisecond tick sends what is due, answered or not.
      const inflight = new Set<Promise<void>>()
      let sent = 0
      while (performance.now() < end) {
        const due = Math.floor(((performance.now() - start) * job.rate) / 1000)
        for (; sent < due; sent++) {
          // A server that cannot keep up would pile up requests without end: past one second of backlog, skip.
          if (inflight.size >= job.rate) { skipped++; continue }
          const p = once().finally(() => inflight.delete(p))
          inflight.add(p)
        }
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
      await Promise.all(inflight)
    }
  } finally {
    await pool.close()
  }
  return { latency: summarize(samples), ok, non2xx, errors, skipped, achieved_rps: (ok + non2xx) / ((performance.now() - start) / 1000) }
}

process.on('message', (msg: { id: number, job: LoadJob }) => {
  const work = msg.job.kind === 'throughput' ? throughput(msg.job) : latency(msg.job)
  work.then(
    (result) => process.send!({ id: msg.id, result }),
    (err: Error) => process.send!({ id: msg.id, error: err.stack ?? err.message })
  )
})
process.on('disconnect', () => process.exit(0))
process.send!({ ready: true })
