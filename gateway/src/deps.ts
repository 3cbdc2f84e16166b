// The gateway's connections, made once at boot and closed on shutdown: Redis (rate limits) and one Agent per upstream.
import type { Logger } from 'pino'
import { createRedis, type Redis } from '@chat-platform/platform'
import type { GatewayConfig } from './config.ts'
import { UPSTREAM_NAMES } from './routing.ts'
import { createUpstream, type DnsLookup, type Upstreams } from './upstreams.ts'

export interface GatewayDeps {
  redis: Redis
  upstreams: Upstreams
}

/** Resolves once Redis is connected, or after `ms` (the gateway starts without Redis: limits fail open). */
function redisReady (redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); redis.off('ready', done); resolve() }
    const timer = setTimeout(done, ms)
    redis.once('ready', done)
  })
}

export async function createDeps (config: GatewayConfig, log: Logger, opts: { lookup?: DnsLookup } = {}): Promise<GatewayDeps> {
  const redis = createRedis({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, log, name: 'gateway' })
  await redisReady(redis, 2_000)
  const urls = { auth: config.AUTH_URL, chat: config.CHAT_URL, billing: config.BILLING_URL }
  const upstreams = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, createUpstream(name, urls[name], {
    connectTimeoutMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    connections: config.UPSTREAM_CONNECTIONS,
    dnsTtlMs: config.UPSTREAM_DNS_TTL_MS,
    downCooldownMs: config.UPSTREAM_DOWN_COOLDOWN_MS,
    lookup: opts.lookup
  })])) as Upstreams
  return { redis, upstreams }
}

export async function closeDeps (deps: GatewayDeps): Promise<void> {
  await Promise.all(Object.values(deps.upstreams).map((u) => u.close().catch(() => {})))
  deps.redis.disconnect()
}
