// Per-user cap on exchanges in flight, held in Redis (a sorted set of slots that each expire on their own).
import { randomUUID } from 'node:crypto'
import type { Redis } from '@chat-platform/platform'
import type { FastifyBaseLogger as Logger } from 'fastify'

// KEYS[1] the user's set, KEYS[2] (optional) a key to read in the same round trip; ARGV: ttl ms, max, slot id.
// Returns {acquired 0|1, value of KEYS[2] or nil}. Redis' own clock, so replicas' clocks need not agree.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local peeked = false
if KEYS[2] then peeked = redis.call('GET', KEYS[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {0, peeked} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {1, peeked}`
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1`

interface InflightRedis extends Redis {
  inflightAcquire: (key: string, ttlMs: number, max: number, id: string) => Promise<[number, string | null]>
  inflightAcquireRead: (key: string, readKey: string, ttlMs: number, max: number, id: string) => Promise<[number, string | null]>
  inflightRenew: (key: string, ttlMs: number, id: string) => Promise<number>
}

export interface InflightSlot {
  /** Pushes the slot's expiry forward (long streams). */
  renew: () => Promise<void>
  release: () => Promise<void>
}

export const inflightKey = (userId: number) => `chat:inflight:${userId}`

/**
 * While Redis is unreachable the cap is kept per process in memory (same limit, per replica), so users can
 * still chat and the overdraft stays bounded by replicas × CHAT_MAX_INFLIGHT.
 */
export class InflightLimiter {
  private readonly redis: InflightRedis
  private readonly local = new Map<number, number>()
  private readonly opts: { max: number, ttlMs: number, log: Logger }
  private degraded = false

  constructor (redis: Redis, opts: { max: number, ttlMs: number, log: Logger }) {
    this.opts = opts
    if (!('inflightAcquire' in redis)) {
      redis.defineCommand('inflightAcquire', { numberOfKeys: 1, lua: ACQUIRE })
      redis.defineCommand('inflightAcquireRead', { numberOfKeys: 2, lua: ACQUIRE })
      redis.defineCommand('inflightRenew', { numberOfKeys: 1, lua: RENEW })
    }
    this.redis = redis as InflightRedis
  }

  /** A slot, or null when the user already has `max` exchanges in flight. */
  async acquire (userId: number): Promise<InflightSlot | null> {
    return (await this.acquireAndRead(userId)).slot
  }

  /**
   * `acquire`, also reading `readKey` in the same round trip (the balance copy before a send): `value` is its
   * content (null when missing), or undefined when Redis could not be asked (the slot is then a local one).
   */
  async acquireAndRead (userId: number, readKey?: string): Promise<{ slot: InflightSlot | null, value?: string | null }> {
    const id = randomUUID()
    const key = inflightKey(userId)
    try {
      const [ok, value] = readKey === undefined
        ? await this.redis.inflightAcquire(key, this.opts.ttlMs, this.opts.max, id)
        : await this.redis.inflightAcquireRead(key, readKey, this.opts.ttlMs, this.opts.max, id)
      if (this.degraded) this.opts.log.info('inflight limiter back on redis')
      this.degraded = false
      if (!ok) return { slot: null, value }
      return {
        slot: {
          renew: async () => { await this.redis.inflightRenew(key, this.opts.ttlMs, id).catch(() => {}) },
          release: async () => { await this.redis.zrem(key, id).catch(() => {}) }
        },
        value
      }
    } catch (err) {
      if (!this.degraded) this.opts.log.warn({ err: (err as Error).message }, 'redis unavailable: inflight limit kept per process')
      this.degraded = true
      return { slot: this.acquireLocal(userId) }
    }
  }

  private acquireLocal (userId: number): InflightSlot | null {
    const n = this.local.get(userId) ?? 0
    if (n >= this.opts.max) return null
    this.local.set(userId, n + 1)
    let released = false
    return {
      renew: async () => {},
      release: async () => {
        if (released) return
        released = true
        const left = (this.local.get(userId) ?? 1) - 1
        if (left <= 0) this.local.delete(userId)
        else this.local.set(userId, left)
      }
    }
  }
}
