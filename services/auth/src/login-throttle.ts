// Login throttling in Redis: every attempt counted atomically before the password is checked, per (email, IP), email and IP.
import type { FastifyBaseLogger as Logger } from 'fastify'
import { ProblemError, type Redis } from '@chat-platform/platform'

export interface LoginThrottleOptions {
  /** Attempts per (email, client IP) per window: the tight limit on guessing one account's password. */
  maxPerEmailIp: number
  /** Attempts per email across all addresses: a ceiling far above the per-pair limit, so one stranger cannot lock the owner out. */
  maxPerEmail: number
  /** Attempts per client IP across all emails. */
  maxPerIp: number
  windowSeconds: number
}

// KEYS: (email, ip), email, ip counters. ARGV: window ms, then the three limits in KEYS' order.
// Refuses (returns the ms until the longest exceeded window ends) when any counter is at its limit, counting
// nothing: a refused attempt never tests a password, so it must not push the per-email ceiling the owner shares.
// Otherwise counts the attempt on all three and returns 0. Fixed windows, started by each counter's first attempt.
const ATTEMPT = `
local wait = 0
for i = 1, 3 do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      ttl = tonumber(ARGV[1])
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for i = 1, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 0`

// KEYS as above. ARGV[1] 'success': the attempt was the right password, so the (email, ip) counter is cleared (the
// owner's own typos from this address are forgiven) and the email and ip counters get their one attempt back.
// ARGV[1] 'undo': the attempt never reached a verdict (an error), all three get it back. Never below zero, and a
// counter that reaches zero is deleted (a key decremented after it expired would otherwise live forever).
const RELEASE = `
local from = 1
if ARGV[1] == 'success' then
  redis.call('DEL', KEYS[1])
  from = 2
end
for i = from, 3 do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n <= 1 then redis.call('DEL', KEYS[i]) else redis.call('DECR', KEYS[i]) end
end
return 1`

interface ThrottleRedis extends Redis {
  loginAttempt: (pair: string, email: string, ip: string, windowMs: number, maxPair: number, maxEmail: number, maxIp: number) => Promise<number>
  loginRelease: (pair: string, email: string, ip: string, mode: 'success' | 'undo') => Promise<number>
}

const PREFIX = 'auth:login-fail'
/** Redis keys (under the service's REDIS_PREFIX). An IP never contains '/', so `<ip>/<email>` is unambiguous. */
export const loginThrottleKeys = (email: string, ip: string): [pair: string, email: string, ip: string] =>
  [`${PREFIX}:email-ip:${ip}/${email}`, `${PREFIX}:email:${email}`, `${PREFIX}:ip:${ip}`]

/**
 * `attempt` runs before the user is looked up or any password hashed, so parallel guesses are bounded exactly
 * like sequential ones, and unknown emails are counted like known ones. When Redis is away the throttle fails
 * open: logins keep working (each still costs an argon2 verification, and the gateway's per-IP rate limit
 * still applies) and the outage is logged once.
 */
export class LoginThrottle {
  private readonly redis: ThrottleRedis
  private readonly opts: LoginThrottleOptions
  private readonly log: Logger
  private degraded = false

  constructor (redis: Redis, opts: LoginThrottleOptions, log: Logger) {
    if (!('loginAttempt' in redis)) {
      redis.defineCommand('loginAttempt', { numberOfKeys: 3, lua: ATTEMPT })
      redis.defineCommand('loginRelease', { numberOfKeys: 3, lua: RELEASE })
    }
    this.redis = redis as ThrottleRedis
    this.opts = opts
    this.log = log
  }

  /** Counts one attempt, or throws 429 `rate_limited` (with Retry-After) without counting it. */
  async attempt (email: string, ip: string): Promise<void> {
    const { maxPerEmailIp, maxPerEmail, maxPerIp, windowSeconds } = this.opts
    const waitMs = await this.call(() => this.redis.loginAttempt(...loginThrottleKeys(email, ip), windowSeconds * 1000, maxPerEmailIp, maxPerEmail, maxPerIp))
    if (!waitMs) return
    const seconds = Math.max(1, Math.ceil(waitMs / 1000))
    throw new ProblemError('rate_limited', `Too many failed logins; try again in ${seconds} s.`, { headers: { 'retry-after': String(seconds) } })
  }

  /** The attempt logged in: it was no failure. */
  async succeeded (email: string, ip: string): Promise<void> {
    await this.call(() => this.redis.loginRelease(...loginThrottleKeys(email, ip), 'success'))
  }

  /** The attempt ended in an error before any verdict on the password (e.g. Postgres away): it does not count. */
  async undo (email: string, ip: string): Promise<void> {
    await this.call(() => this.redis.loginRelease(...loginThrottleKeys(email, ip), 'undo'))
  }

  private async call<T> (op: () => Promise<T>): Promise<T | undefined> {
    try {
      const v = await op()
      if (this.degraded) this.log.info('login throttling back')
      this.degraded = false
      return v
    } catch (err) {
      if (!this.degraded) this.log.warn({ err: (err as Error).message }, 'login throttling unavailable (redis); failing open')
      this.degraded = true
      return undefined
    }
  }
}
