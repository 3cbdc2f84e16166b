// Rate limits in Redis (shared by every gateway replica) that fail open: a Redis outage is logged and counted, never a 5xx.
import { createRequire } from 'node:module'
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
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

// KEYS[1] the window's counter; ARGV: increment, window ms. The same keys and fixed window as RedisStore's script.
const INCR_BY = `
local current = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if current == tonumber(ARGV[1]) or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {current, ttl}`

interface SyncRedis extends Redis {
  rateLimitIncrBy: (key: string, n: number, windowMs: number) => Promise<[number, number]>
}

interface Entry {
  /** The window's total in Redis at the last answer (every replica's requests). */
  count: number
  /** Let through here and sent to Redis, answer pending. */
  sending: number
  /** Let through here, not yet sent. */
  pending: number
  resetAt: number
  /** Redis has answered for this window at least once. */
  known: boolean
}

/** Keys tracked at most; past this, requests are counted in Redis one by one (a flood of distinct IPs). */
const MAX_ENTRIES = 100_000

/**
 * A fixed-window counter in Redis, counted locally for the first half of each window's budget.
 *
 * The first request of a key in a window, and every request once the key's known count has reached half its
 * limit, is counted in Redis before it is answered (exact, shared by every replica). Below half, a request
 * is counted here and the counts are sent to Redis in one batch every `syncMs` (whose answers bring the
 * other replicas' counts back). So a client within its budget costs no Redis round trip per request, and
 * near its limit it is counted exactly. Two replicas can never let a key past its limit; with N > 2 a key
 * that spends more than half its budget inside one sync interval may get up to N/2 × the limit in that window.
 */
export class SyncedRedisStore implements Store {
  private readonly entries = new Map<string, Entry>()
  private readonly dirty = new Set<string>()
  private readonly redis: SyncRedis
  private timer: NodeJS.Timeout | undefined
  private closed = false
  private readonly opts: { nameSpace: string, syncMs: number, onError: (err: Error) => void, onSyncError: (err: Error) => void }

  constructor (redis: Redis, opts: SyncedRedisStore['opts']) {
    this.opts = opts
    if (!('rateLimitIncrBy' in redis)) redis.defineCommand('rateLimitIncrBy', { numberOfKeys: 1, lua: INCR_BY })
    this.redis = redis as SyncRedis
  }

  incr (key: string, cb: StoreCallback, timeWindow: number, max: number): void {
    const now = Date.now()
    let e = this.entries.get(key)
    if (e && now >= e.resetAt) {
      // A new window: what this replica counted for the old one no longer matters.
      this.entries.delete(key)
      e = undefined
    }
    if (e?.known) {
      const current = e.count + e.sending + e.pending + 1
      if (current <= max - Math.ceil(max / 2)) {
        e.pending++
        this.dirty.add(key)
        this.schedule()
        cb(null, { current, ttl: e.resetAt - now })
        return
      }
    }
    if (!e && (this.entries.size < MAX_ENTRIES || this.prune(now))) {
      e = { count: 0, sending: 0, pending: 0, resetAt: now + timeWindow, known: false }
      this.entries.set(key, e)
    }
    // Counted in Redis now, together with what this key had pending here.
    const held = e?.pending ?? 0
    if (e) e.pending = 0
    this.send(key, e, held + 1, timeWindow).then(([current, ttl]) => cb(null, { current, ttl }), (err: Error) => {
      // This request is served uncounted (fail open); the ones counted here are sent again later.
      if (e && held) { e.pending += held; this.dirty.add(key) }
      this.opts.onError(err)
      cb(err)
    })
  }

  child (): Store { return this }

  /** Stops the sync timer after sending what is pending once more. */
  close (): void {
    this.closed = true
    clearTimeout(this.timer)
    this.flush()
  }

  private send (key: string, e: Entry | undefined, n: number, windowMs: number): Promise<[number, number]> {
    if (e) e.sending += n
    return this.redis.rateLimitIncrBy(this.opts.nameSpace + key, n, windowMs).then(([current, ttl]) => {
      if (e) {
        e.sending -= n
        e.count = current
        e.resetAt = Date.now() + ttl
        e.known = true
      }
      return [current, ttl] as [number, number]
    }, (err: Error) => {
      if (e) e.sending -= n
      throw err
    })
  }

  private schedule (): void {
    if (this.timer || this.closed) return
    this.timer = setTimeout(() => { this.timer = undefined; this.flush() }, this.opts.syncMs)
    this.timer.unref()
  }

  private flush (): void {
    const now = Date.now()
    for (const key of this.dirty) {
      const e = this.entries.get(key)
      if (!e || e.pending === 0 || now >= e.resetAt) continue
      const n = e.pending
      e.pending = 0
      // Already let through: a failed send is put back and tried again at the next sync.
      this.send(key, e, n, e.resetAt - now).catch((err: Error) => {
        e.pending += n
        this.dirty.add(key)
        this.schedule()
        this.opts.onSyncError(err)
      })
    }
    this.dirty.clear()
  }

  /** Drops finished windows; true when there is room again. */
  private prune (now: number): boolean {
    for (const [key, e] of this.entries) if (now >= e.resetAt) this.entries.delete(key)
    return this.entries.size < MAX_ENTRIES
  }
}

export interface RateLimitZoneOptions {
  zone: string
  redis: Redis
  nameSpace: string
  max: number
  windowMs: number
  /** Count locally below half the limit and sync every this many ms (SyncedRedisStore); absent: every request in Redis. */
  syncMs?: number
  keyGenerator?: (request: FastifyRequest) => string
}

export const clientIp = (request: FastifyRequest) => `ip:${normalizeIP(request.ip)}`

/**
 * Rate limits every route declared after it in `app` (an encapsulated zone), as @fastify/rate-limit did with
 * `enableDraftSpec` and `skipOnError`: a fixed window per key, the `ratelimit-limit`, `ratelimit-remaining` and
 * `ratelimit-reset` headers on every answer, 429 `rate_limited` with `Retry-After` past the limit, and a failed store
 * serves the request as if nothing were counted. The check is one callback-style onRequest hook appended to each
 * route's own hooks (so it runs after the zone's hooks, e.g. the admin role check): the plugin's async hook cost two
 * promises and several microtask hops per request, more than the local count itself (the synced store answers
 * synchronously below half the limit).
 */
export async function registerRateLimit (app: FastifyInstance, opts: RateLimitZoneOptions) {
  const { rateLimitFailOpen, rateLimited } = app.gatewayMetrics
  let lastWarning = 0
  const warn = (err: Error, msg: string) => {
    if (Date.now() - lastWarning > 10_000) {
      lastWarning = Date.now()
      app.log.warn({ err: err.message, zone: opts.zone }, msg)
    }
  }
  const failOpen = rateLimitFailOpen.labels(opts.zone)
  const refused = rateLimited.labels(opts.zone)
  const onStoreError = (err: Error) => {
    failOpen.inc()
    warn(err, 'rate-limit store unavailable; serving without limits')
  }
  let store: Store
  if (opts.syncMs !== undefined && opts.syncMs > 0) {
    const synced = new SyncedRedisStore(opts.redis, { nameSpace: opts.nameSpace, syncMs: opts.syncMs, onError: onStoreError, onSyncError: (err) => warn(err, 'rate-limit counts could not be sent to Redis; retrying') })
    app.addHook('onClose', async () => { synced.close() })
    store = synced
  } else {
    // The plugin's own Redis store: each request counted in Redis; a failure is counted here and served.
    const inner = new RedisStore(false, false, opts.redis, opts.nameSpace)
    store = {
      incr: (key, cb, timeWindow, max) => {
        inner.incr(key, (err, res) => {
          if (err) onStoreError(err)
          cb(err, res)
        }, timeWindow, max)
      },
      child: () => store
    }
  }

  const max = Math.trunc(opts.max)
  const windowMs = Math.trunc(opts.windowMs)
  const keyOf = opts.keyGenerator ?? clientIp
  const check = function rateLimit (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    store.incr(keyOf(request), (err, res) => {
      // A failed store: served, as if this were the window's first request (what skipOnError answered).
      const current = err || !res ? 0 : res.current
      const ttl = err || !res ? 0 : res.ttl
      const seconds = Math.ceil(ttl / 1000)
      reply.header('ratelimit-limit', max)
      if (current <= max) {
        reply.header('ratelimit-remaining', max - current)
        reply.header('ratelimit-reset', seconds)
        return done()
      }
      refused.inc()
      reply.header('ratelimit-remaining', 0)
      reply.header('ratelimit-reset', seconds)
      reply.header('retry-after', seconds)
      const retry = Math.max(1, Math.ceil(ttl / 1000))
      done(problem('rate_limited', `Too many requests; retry in ${retry} s.`, { headers: { 'retry-after': String(retry) } }))
    }, windowMs, max)
  }
  app.addHook('onRoute', (route) => {
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [...own, check]
  })
}
