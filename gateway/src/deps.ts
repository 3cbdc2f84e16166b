// The gateway's connections, made once at boot and closed on shutdown: Redis (rate limits), NATS (token revocations) and one Agent per upstream.
import type { Logger } from 'pino'
import type { NatsConnection } from '@nats-io/transport-node'
import { namespaced } from '@chat-platform/contracts'
import { connectNats, createRedis, RevocationFeed, type Redis } from '@chat-platform/platform'
import type { GatewayConfig } from './config.ts'
import { UPSTREAM_NAMES } from './routing.ts'
import { createUpstream, type DnsLookup, type Upstreams } from './upstreams.ts'

export interface GatewayDeps {
  redis: Redis
  upstreams: Upstreams
  /** Revoked access tokens from AUTH_REVOCATIONS; the gateway is not ready until it has caught up. */
  revocations: RevocationFeed
  /** The NATS connection, once made (the gateway boots without waiting for NATS). */
  nats: Promise<NatsConnection>
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
  // Not awaited: NATS away at boot must not keep the gateway from starting (it stays not ready meanwhile).
  const nats = connectNats({ url: config.NATS_URL, name: 'gateway', log })
  nats.catch((err) => { log.error({ err }, 'NATS connection failed') })
  const revocations = new RevocationFeed({ nc: nats, stream: namespaced(config.EVENTS_NAMESPACE).streams.AUTH_REVOCATIONS.name, log })
  revocations.start()
  return { redis, upstreams, revocations, nats }
}

export async function closeDeps (deps: GatewayDeps): Promise<void> {
  await deps.revocations.stop()
  // A connection still being made is closed when it comes.
  deps.nats.then((nc) => nc.drain()).catch(() => {})
  await Promise.all(Object.values(deps.upstreams).map((u) => u.close().catch(() => {})))
  deps.redis.disconnect()
}
