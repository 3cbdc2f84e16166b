// Failed redemptions per user, counted in Redis: a user who keeps typing wrong codes is refused for a while (no guessing).
import type { FastifyBaseLogger as Logger } from 'fastify'
import { ProblemError, type Redis } from '@chat-platform/platform'

// KEYS[1] the user's counter. ARGV: window ms, limit. At the limit: returns the ms until the window ends, counting
// nothing. Otherwise counts this attempt (a fixed window started by the first) and returns 0. Counting before the
// code is checked bounds parallel guesses exactly like sequential ones; a success gives its attempt back.
const ATTEMPT = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    ttl = tonumber(ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return ttl
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0`

// Gives one attempt back (never below zero; a counter at zero is deleted, so none outlives its window).
const RELEASE = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 1 then redis.call('DEL', KEYS[1]) else redis.call('DECR', KEYS[1]) end
return 1`

interface ThrottleRedis extends Redis {
  redeemAttempt: (key: string, windowMs: number, max: number) => Promise<number>
  redeemRelease: (key: string) => Promise<number>
}

/** The counter's key (under billing's REDIS_PREFIX). */
export const redeemThrottleKey = (userId: number) => `billing:redeem-fail:${userId}`

/**
 * `attempt` before the code is looked up; `release` when it was redeemed (or the attempt ended in an error before
 * any verdict). With Redis away it fails open: 100-bit codes cannot be guessed in the meantime, and the gateway's
 * per-user rate limit still applies; the outage is logged once.
 */
export class RedeemThrottle {
  private readonly redis: ThrottleRedis
  private readonly opts: { max: number, windowSeconds: number }
  private readonly log: Logger
  private degraded = false

  constructor (redis: Redis, opts: { max: number, windowSeconds: number }, log: Logger) {
    this.opts = opts
    this.log = log
    if (!('redeemAttempt' in redis)) {
      redis.defineCommand('redeemAttempt', { numberOfKeys: 1, lua: ATTEMPT })
      redis.defineCommand('redeemRelease', { numberOfKeys: 1, lua: RELEASE })
    }
    this.redis = redis as ThrottleRedis
  }

  /** Counts one attempt, or throws 429 `rate_limited` (with Retry-After) without counting it. */
  async attempt (userId: number): Promise<void> {
    const waitMs = await this.call(() => this.redis.redeemAttempt(redeemThrottleKey(userId), this.opts.windowSeconds * 1000, this.opts.max))
    if (!waitMs) return
    const seconds = Math.max(1, Math.ceil(waitMs / 1000))
    throw new ProblemError('rate_limited', `Too many failed redemptions; try again in ${seconds} s.`, { headers: { 'retry-after': String(seconds) } })
  }

  async release (userId: number): Promise<void> {
    await this.call(() => this.redis.redeemRelease(redeemThrottleKey(userId)))
  }

  private async call<T> (op: () => Promise<T>): Promise<T | undefined> {
    try {
      const v = await op()
      if (this.degraded) this.log.info('redemption throttling back')
      this.degraded = false
      return v
    } catch (err) {
      if (!this.degraded) this.log.warn({ err: (err as Error).message }, 'redemption throttling unavailable (redis); failing open')
      this.degraded = true
      return undefined
    }
  }
}
