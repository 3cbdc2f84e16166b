// Redis through ioredis: fails fast while Redis is away so callers can degrade instead of hanging.
import { Redis } from 'ioredis'
import type { Logger } from 'pino'

export function createRedis (opts: { url: string, prefix: string, log?: Logger, name?: string }): Redis {
  const redis = new Redis(opts.url, {
    keyPrefix: opts.prefix,
    connectionName: opts.name,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 2_000,
    commandTimeout: 1_000,
    retryStrategy: (times) => Math.min(times * 200, 2_000)
  })
  let warned = false
  redis.on('error', (err) => {
    if (!warned) opts.log?.warn({ err: err.message }, 'redis unavailable')
    warned = true
  })
  redis.on('ready', () => { if (warned) opts.log?.info('redis back'); warned = false })
  return redis
}

export async function pingRedis (redis: Redis): Promise<void> {
  await redis.ping()
}

export type { Redis }
