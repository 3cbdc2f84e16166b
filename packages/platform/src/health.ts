// /healthz, /readyz and /metrics for every process, with an HTTP duration histogram per route.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Registry, Histogram, Counter, collectDefaultMetrics } from 'prom-client'

// A service's own metrics use the same prom-client as the registry they join.
export { Counter, Gauge, Histogram, type Metric } from 'prom-client'

export type ReadinessCheck = () => Promise<void>

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry
  }
}

export interface HealthOptions {
  service: string
  checks: Record<string, ReadinessCheck>
  timeoutMs?: number
  /** Requests another histogram already times (the gateway's proxied ones) are left out of http_request_duration_seconds. */
  timedElsewhere?: (request: FastifyRequest) => boolean
}

const withTimeout = async (p: Promise<void>, ms: number) => {
  let t: NodeJS.Timeout | undefined
  try {
    await Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms) })])
  } finally { clearTimeout(t) }
}

async function health (app: FastifyInstance, opts: HealthOptions) {
  const registry = new Registry()
  registry.setDefaultLabels({ service: opts.service })
  collectDefaultMetrics({ register: registry })
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route, method and status',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const readyFailures = new Counter({ name: 'readiness_failures_total', help: 'Failed readiness checks', labelNames: ['check'], registers: [registry] })
  app.decorate('metrics', registry)

  const { timedElsewhere } = opts
  app.addHook('onResponse', (request, reply, done) => {
    if (!timedElsewhere?.(request)) duration.labels(request.routeOptions.url ?? 'unmatched', request.method, String(reply.statusCode)).observe(reply.elapsedTime / 1000)
    done()
  })

  const Status = { type: 'object', properties: { status: { type: 'string' }, checks: { type: 'object', additionalProperties: { type: 'string' } } } }
  app.get('/healthz', { schema: { hide: true, response: { 200: Status } } as object, logLevel: 'warn' }, async () => ({ status: 'ok' }))
  app.get('/readyz', { schema: { hide: true, response: { 200: Status, 503: Status } } as object, logLevel: 'warn' }, async (_request, reply) => {
    const checks: Record<string, string> = {}
    let ok = true
    await Promise.all(Object.entries(opts.checks).map(async ([name, check]) => {
      try {
        await withTimeout(check(), opts.timeoutMs ?? 2_000)
        checks[name] = 'ok'
      } catch (err) {
        ok = false
        readyFailures.labels(name).inc()
        checks[name] = `failing: ${(err as Error).message}`
      }
    }))
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', checks })
  })
  app.get('/metrics', { schema: { hide: true } as object, logLevel: 'warn' }, async (_request, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}

export const healthPlugin = fp(health, { name: 'health', fastify: '5.x' })
