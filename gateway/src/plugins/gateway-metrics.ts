// Gateway metrics on the platform registry: proxied requests per route and upstream, upstream errors, rate-limit outcomes.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, type Registry } from 'prom-client'

/** One line of a metric as prom-client's registry prints it. */
interface MetricLine { labels: Record<string, string | number>, value: number, metricName: string }

/** One label set's series of a LeanHistogram: observing is a bucket search and three additions. */
export class LeanHistogramChild {
  readonly counts: Float64Array
  readonly labels: Record<string, string>
  private readonly bounds: readonly number[]
  sum = 0
  count = 0
  constructor (labels: Record<string, string>, bounds: readonly number[]) {
    this.labels = labels
    this.bounds = bounds
    this.counts = new Float64Array(bounds.length)
  }

  observe (value: number): void {
    // As prom-client's: a NaN or infinite value would poison the sum for good.
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`)
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]) i++
    if (i < bounds.length) this.counts[i]++
    this.sum += value
    this.count++
  }
}

/**
 * A Prometheus histogram for the proxy's hot path, exposed in prom-client's format through its registry. A
 * prom-client child validates and hashes its label set and turns the bucket bound into a string key on every
 * observe (~2.4 µs of the gateway's ~100 µs per request); a child here holds its buckets in an array.
 */
export class LeanHistogram<L extends string> {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly name: string
  readonly help: string
  private readonly bounds: readonly number[]
  private readonly labelNames: readonly L[]
  private readonly children = new Map<string, LeanHistogramChild>()

  constructor (opts: { name: string, help: string, labelNames: readonly L[], buckets: readonly number[], registers: Registry[] }) {
    this.name = opts.name
    this.help = opts.help
    this.labelNames = opts.labelNames
    this.bounds = [...opts.buckets].sort((a, b) => a - b)
    for (const r of opts.registers) r.registerMetric(this as never)
  }

  /** The series of these label values (in labelNames order), made on first use. */
  labels (...values: string[]): LeanHistogramChild {
    const key = values.join('\u0000')
    let child = this.children.get(key)
    if (child === undefined) {
      if (values.length !== this.labelNames.length) throw new Error(`${this.name}: ${this.labelNames.length} label values expected`)
      child = new LeanHistogramChild(Object.fromEntries(this.labelNames.map((n, i) => [n, values[i]])), this.bounds)
      this.children.set(key, child)
    }
    return child
  }

  get (): { name: string, help: string, type: 'histogram', values: MetricLine[], aggregator: 'sum' } {
    const values: MetricLine[] = []
    for (const child of this.children.values()) {
      let acc = 0
      this.bounds.forEach((le, i) => {
        acc += child.counts[i]
        values.push({ labels: { le, ...child.labels }, value: acc, metricName: `${this.name}_bucket` })
      })
      values.push({ labels: { le: '+Inf', ...child.labels }, value: child.count, metricName: `${this.name}_bucket` })
      values.push({ labels: child.labels, value: child.sum, metricName: `${this.name}_sum` })
      values.push({ labels: child.labels, value: child.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  /** Zeroes every series (callers keep their children). */
  reset (): void {
    for (const child of this.children.values()) {
      child.counts.fill(0)
      child.sum = 0
      child.count = 0
    }
  }
}

export interface GatewayMetrics {
  upstreamDuration: LeanHistogram<'upstream' | 'route' | 'method' | 'status'>
  upstreamErrors: Counter<'upstream' | 'kind'>
  rateLimited: Counter<'zone'>
  rateLimitFailOpen: Counter<'zone'>
  docsFetchErrors: Counter<'upstream'>
}

declare module 'fastify' {
  interface FastifyInstance {
    gatewayMetrics: GatewayMetrics
  }
}

async function gatewayMetrics (app: FastifyInstance) {
  const registers = [app.metrics]
  app.decorate('gatewayMetrics', {
    upstreamDuration: new LeanHistogram({
      name: 'gateway_upstream_request_duration_seconds',
      help: 'Proxied requests by upstream service and API route: count and latency until the answer is complete',
      labelNames: ['upstream', 'route', 'method', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers
    }),
    upstreamErrors: new Counter({
      name: 'gateway_upstream_errors_total',
      help: 'Upstream requests that failed before an answer (connect refused or timed out, response timeout, reset)',
      labelNames: ['upstream', 'kind'],
      registers
    }),
    rateLimited: new Counter({ name: 'gateway_rate_limited_total', help: 'Requests refused with 429', labelNames: ['zone'], registers }),
    rateLimitFailOpen: new Counter({
      name: 'gateway_rate_limit_fail_open_total',
      help: 'Requests let through unlimited because the rate-limit store (Redis) failed',
      labelNames: ['zone'],
      registers
    }),
    docsFetchErrors: new Counter({ name: 'gateway_docs_fetch_errors_total', help: 'Failed fetches of a service OpenAPI document', labelNames: ['upstream'], registers })
  })
}

export const gatewayMetricsPlugin = fp(gatewayMetrics, { name: 'gateway-metrics', fastify: '5.x', dependencies: ['health'] })
