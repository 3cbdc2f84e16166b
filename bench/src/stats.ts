// Small statistics helpers: percentiles over float samples, medians, rounding for the report.

/** The p-th percentile (0–100) of `values` by nearest rank; NaN when empty. */
export function percentile (values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

export const median = (values: number[]): number => percentile(values, 50)

export interface LatencySummary { n: number, mean: number, p50: number, p90: number, p99: number, max: number }

export function summarize (values: number[]): LatencySummary {
  const n = values.length
  const sorted = Float64Array.from(values).sort()
  const at = (p: number) => n === 0 ? Number.NaN : sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))]
  let sum = 0
  for (const v of values) sum += v
  return { n, mean: n ? sum / n : Number.NaN, p50: at(50), p90: at(90), p99: at(99), max: n ? sorted[n - 1] : Number.NaN }
}

/** Rounds to `digits` significant decimals for display and JSON (keeps NaN/null readable). */
export function round (v: number | null | undefined, digits = 3): number | null {
  if (v === null || v === undefined || !Number.isFinite(v)) return null
  const f = 10 ** digits
  return Math.round(v * f) / f
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
