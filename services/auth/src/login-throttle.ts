// Login throttling in Redis: failed logins counted per email and per client IP; over the limit is 429.
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { FastifyBaseLogger as Logger } from 'fastify'
import { ProblemError, type Redis } from '@chat-platform/platform'

export interface LoginThrottleOptions { maxPerEmail: number, maxPerIp: number, windowSeconds: number }

/**
 * Counts failures only (a successful login clears its email's counter). The check runs before any
 * password hashing, so a flood of guesses cannot keep the hashing pool busy. When Redis is away the
 * throttle fails open: logins keep working and the outage is logged.
 */
export class LoginThrottle {
  private readonly byEmail: RateLimiterRedis
  private readonly byIp: RateLimiterRedis
  private readonly log: Logger
  private degraded = false

  constructor (redis: Redis, opts: LoginThrottleOptions, log: Logger) {
    const common = { storeClient: redis, duration: opts.windowSeconds, useRedisPackage: false }
    this.byEmail = new RateLimiterRedis({ ...common, keyPrefix: 'auth:login-fail:email', points: opts.maxPerEmail })
    this.byIp = new RateLimiterRedis({ ...common, keyPrefix: 'auth:login-fail:ip', points: opts.maxPerIp })
    this.log = log
  }

  /** Throws 429 `rate_limited` (with Retry-After) when the email or the IP has used up its failures. */
  async check (email: string, ip: string): Promise<void> {
    const res = await this.redis(() => Promise.all([this.byEmail.get(email), this.byIp.get(ip)]))
    if (!res) return
    const [e, i] = res
    const waits: number[] = []
    if (e && e.consumedPoints >= this.byEmail.points) waits.push(e.msBeforeNext)
    if (i && i.consumedPoints >= this.byIp.points) waits.push(i.msBeforeNext)
    if (waits.length) {
      const seconds = Math.max(1, Math.ceil(Math.max(...waits) / 1000))
      throw new ProblemError('rate_limited', `Too many failed logins; try again in ${seconds} s.`, { headers: { 'retry-after': String(seconds) } })
    }
  }

  async recordFailure (email: string, ip: string): Promise<void> {
    // consume() rejects with a RateLimiterRes once over the limit: the count is what matters here.
    await this.redis(() => Promise.all([
      this.byEmail.consume(email).catch(rethrowErrors),
      this.byIp.consume(ip).catch(rethrowErrors)
    ]))
  }

  async recordSuccess (email: string): Promise<void> {
    await this.redis(() => this.byEmail.delete(email))
  }

  private async redis<T> (op: () => Promise<T>): Promise<T | undefined> {
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

function rethrowErrors (err: unknown): void {
  if (!(err instanceof RateLimiterRes)) throw err
}
