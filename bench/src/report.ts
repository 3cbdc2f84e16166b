// The report: a Markdown table (stdout, README) and the JSON document (bench/results/latest.json).
import { met, type Figure, type Results } from './context.ts'
import { machineLine, type Machine } from './machine.ts'
import type { Rss } from './procs.ts'

export type Memory = Record<string, { idle: Rss | null, after_load: Rss | null }>

const SERVICES = ['gateway', 'auth', 'chat', 'billing']
const fmtValue = (f: Figure) => f.value === null ? 'n/a' : `${f.value}${f.unit === '×' ? '' : ` ${f.unit}`}`
const fmtTarget = (f: Figure) => f.target ? `${f.target.op === '>=' ? '≥' : f.target.op === '<=' ? '≤' : '<'} ${f.target.value}${f.unit === '×' ? '' : ` ${f.unit}`}` : ''
const verdict = (f: Figure) => { const m = met(f); return m === null ? '' : m ? 'met' : '**missed**' }

export function markdown (results: Results, memory: Memory, machine: Machine, quick: boolean, seconds: number): string {
  const lines = [
    `Benchmark ${quick ? '(--quick: small counts, figures indicative only)' : '(full run)'}, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round(seconds)} s`,
    `Machine: ${machineLine(machine)}`,
    '',
    '| figure | key | value | baseline in the same run | target | |',
    '| --- | --- | --- | --- | --- | --- |'
  ]
  for (const f of results.figures) lines.push(`| ${f.label} | \`${f.key}\` | ${fmtValue(f)} | ${f.baseline ?? ''} | ${fmtTarget(f)} | ${verdict(f)} |`)
  lines.push('', '| process | RSS idle (MB) | V8 heap used idle (MB) | RSS after load (MB) | peak RSS (MB) | target idle | |', '| --- | --- | --- | --- | --- | --- | --- |')
  for (const [name, m] of Object.entries(memory)) {
    const idle = m.idle?.rss_mb
    const service = SERVICES.includes(name)
    const ok = idle === undefined || !service ? '' : idle < 150 ? 'met' : '**missed**'
    lines.push(`| ${name} | ${idle?.toFixed(1) ?? 'n/a'} | ${m.idle?.heap_used_mb?.toFixed(1) ?? ''} | ${m.after_load?.rss_mb.toFixed(1) ?? ''} | ${m.after_load?.peak_mb.toFixed(1) ?? ''} | ${service ? '< 150 MB' : ''} | ${ok} |`)
  }
  if (results.curves.length) {
    lines.push('', '| curve | key | points (size → value) | grows faster than it must? | rule |', '| --- | --- | --- | --- | --- |')
    for (const c of results.curves) {
      const points = c.points.map((p) => `${p.size.toLocaleString('en-US')} ${c.sizeLabel} → ${p.value ?? 'n/a'}${p.value === null ? '' : ` ${c.unit}`}${p.extra ? ` (${p.extra})` : ''}`).join('; ')
      lines.push(`| ${c.label} | \`${c.key}\` | ${points} | ${c.flag === null ? 'n/a' : c.flag ? '**yes**' : 'no'} | ${c.rule} |`)
    }
  }
  if (results.notes.length) lines.push('', ...results.notes.map((n) => `- ${n}`))
  return lines.join('\n')
}

export function json (results: Results, memory: Memory, machine: Machine, quick: boolean, seconds: number) {
  const value = (key: string) => results.figures.find((f) => f.key === key)?.value ?? null
  const keys = ['gateway_throughput_ratio', 'gateway_vs_minimal_proxy_ratio', 'gateway_cpu_vs_minimal_proxy', 'gateway_own_cpu_vs_minimal_proxy', 'gateway_p50_added_ms', 'gateway_p99_added_ms', 'send_exchanges_per_s',
    'send_cpu_ms_per_exchange', 'send_p50_ms', 'send_p99_ms', 'send_slow_upstream_ratio', 'stream_ttfb_added_ms', 'usage_apply_ratio', 'usage_events_per_s', 'usage_p50_ms', 'usage_p99_ms', 'replay_events_per_s',
    'admission_lag_cpu_ratio', 'admission_lag_latency_ratio', 'admission_lag_overdraft', 'revocation_cpu_ratio', 'revocation_check_ns', 'revocation_propagation_ms',
    'providers_open_cpu_ratio', 'providers_open_latency_added_ms', 'providers_failover_latency_added_ms', 'callbacks_per_s', 'callbacks_vs_balance_ratio', 'callbacks_verify_us',
    'outbox_drain_vs_raw_publish_ratio']
  return {
    quick,
    finished_at: new Date().toISOString(),
    seconds: Math.round(seconds),
    machine,
    ...Object.fromEntries(keys.map((k) => [k, value(k)])),
    rss_mb: Object.fromEntries(Object.entries(memory).map(([name, m]) => [name, { idle: m.idle?.rss_mb ?? null, after_load: m.after_load?.rss_mb ?? null, peak: m.after_load?.peak_mb ?? null, heap_used_idle: m.idle?.heap_used_mb ?? null }])),
    targets: results.figures.filter((f) => f.target).map((f) => ({ key: f.key, value: f.value, target: `${f.target!.op} ${f.target!.value}`, met: met(f) })),
    figures: results.figures,
    curves: results.curves,
    details: results.details,
    notes: results.notes
  }
}
