// A provider's circuit breaker: consecutive failures open it for a cool-down, then one probe (half-open) decides.
export type BreakerState = 'closed' | 'open' | 'half_open'

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. */
  failures: number
  /** How long an open circuit refuses calls before it lets one probe through. */
  cooldownMs: number
  /** Told on every change of state (metrics, logs). */
  onChange?: (state: BreakerState) => void
  now?: () => number
}

/**
 * Per process (each replica learns on its own: a provider that is down fails the first calls of each replica, then
 * none until the cool-down ends). `allow()` reserves the single probe of a half-open circuit; the caller reports
 * the probe's verdict with `success()`/`failure()`, or `release()` when the call gave none (the client left, or
 * the request itself was refused) so the next call may probe.
 */
export class CircuitBreaker {
  private _state: BreakerState = 'closed'
  private consecutive = 0
  private openedAt = 0
  /** Closed until then whatever the state (a long Retry-After). */
  private notBefore = 0
  private probing = false
  private readonly opts: BreakerOptions
  private readonly now: () => number

  constructor (opts: BreakerOptions) {
    this.opts = opts
    this.now = opts.now ?? Date.now
  }

  get state (): BreakerState { return this._state }

  /** May a call go to this provider now? (A half-open circuit lets exactly one through until its verdict.) */
  allow (): boolean {
    const now = this.now()
    if (now < this.notBefore) return false
    if (this._state === 'closed') return true
    if (this._state === 'open') {
      if (now - this.openedAt < this.opts.cooldownMs) return false
      this.set('half_open')
    }
    if (this.probing) return false
    this.probing = true
    return true
  }

  success (): void {
    this.consecutive = 0
    this.probing = false
    if (this._state !== 'closed') this.set('closed')
  }

  /** A failure before the first byte; `retryAfterMs` (a 429's) keeps calls away at least that long. */
  failure (retryAfterMs?: number): void {
    const now = this.now()
    this.consecutive++
    this.probing = false
    if (retryAfterMs !== undefined) this.notBefore = Math.max(this.notBefore, now + retryAfterMs)
    if (this._state === 'half_open' || this.consecutive >= this.opts.failures) {
      this.openedAt = now
      if (this._state !== 'open') this.set('open')
    }
  }

  /** The call gave no verdict: a half-open circuit's probe slot is free again. */
  release (): void {
    this.probing = false
  }

  private set (state: BreakerState): void {
    this._state = state
    this.opts.onChange?.(state)
  }
}
