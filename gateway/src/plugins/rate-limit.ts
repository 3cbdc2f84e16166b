// Rate limits in Redis (shared by every gateway replica) that fail open: a Redis outage is logged and counted, never a 5xx.
import { createRequire } from 'node:module'
import fastifyRateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Redis } from '@chat-platform/platform'
import { problem } from '@chat-platform/platform'

type StoreCallback = (err: Error | null, res?: { current: number, ttl: number }) => void
interface Store {
  incr: (key: string, cb: StoreCallback, timeWindow: number, max: number) => void
  child: (routeOptions: unknown) => Store
}
type StoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, nameSpace: string) => Store

// The plugin's own Redis store (its Lua script keeps INCR and PEXPIRE atomic); it ships without type declarations.
const RedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as StoreCtor

export interface RateLimitZoneOptions {
  zone: string
  redis: Redis
  nameSpace: string
  max: number
  windowMs: number
  keyGenerator?: (request: FastifyRequest) => string
}

export const clientIp = (request: FastifyRequest) => `ip:${normalizeIP(request.ip)}`

/** Registers @fastify/rate-limit for every route declared after it in `app` (an encapsulated zone). */
export async function registerRateLimit (app: FastifyInstance, opts: RateLimitZoneOptions) {
  const { rateLimitFailOpen, rateLimited } = app.gatewayMetrics
  let lastWarning = 0
  const onStoreError = (err: Error) => {
    rateLimitFailOpen.labels(opts.zone).inc()
    if (Date.now() - lastWarning > 10_000) {
      lastWarning = Date.now()
      app.log.warn({ err: err.message, zone: opts.zone }, 'rate-limit store unavailable; serving without limits')
    }
  }
  class FailOpenStore implements Store {
    readonly inner: Store
    // @fastify/rate-limit constructs the store with its settings; child() passes the inner store instead.
    constructor (_settings: unknown, inner?: Store) { this.inner = inner ?? new RedisStore(false, false, opts.redis, opts.nameSpace) }
    incr (key: string, cb: StoreCallback, timeWindow: number, max: number) {
      this.inner.incr(key, (err, res) => {
        if (err) onStoreError(err)
        cb(err, res)
      }, timeWindow, max)
    }

    child (routeOptions: unknown) { return new FailOpenStore(null, this.inner.child(routeOptions)) }
  }

  await app.register(fastifyRateLimit, {
    global: true,
    max: opts.max,
    timeWindow: opts.windowMs,
    store: FailOpenStore as never,
    skipOnError: true,
    enableDraftSpec: true,
    keyGenerator: opts.keyGenerator ?? clientIp,
    onExceeded: () => { rateLimited.labels(opts.zone).inc() },
    errorResponseBuilder: (_request, ctx) => {
      const seconds = Math.max(1, Math.ceil(ctx.ttl / 1000))
      return problem('rate_limited', `Too many requests; retry in ${seconds} s.`, { headers: { 'retry-after': String(seconds) } })
    }
  })
}
