// Gateway metrics on the platform registry: proxied requests per route and upstream, upstream errors, rate-limit outcomes.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, Histogram } from 'prom-client'

export interface GatewayMetrics {
  upstreamDuration: Histogram<'upstream' | 'route' | 'method' | 'status'>
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
    upstreamDuration: new Histogram({
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
