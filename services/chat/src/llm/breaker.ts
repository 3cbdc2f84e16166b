// A provider's circuit breaker: consecutive failures (or a long Retry-After) open it for a while, then one probe (half-open) decides.
export type BreakerState = 'closed' | 'open' | 'half_open'

/** CHAT_LLM_RETRY_AFTER_CAP_MS's default: the longest a provider's Retry-After keeps it out. */
export const DEFAULT_RETRY_AFTER_CAP_MS = 300_000

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. */
  failures: number
  /** How long an open circuit refuses calls before it lets one probe through. */
  cooldownMs: number
  /**
   * The longest a Retry-After keeps calls away (default DEFAULT_RETRY_AFTER_CAP_MS): a provider asking for more
   * (a bogus 1e12) is probed again after this, not left out until the process restarts.
   */
  retryAfterCapMs?: number
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
  /** Consecutive failures opened it: refused until then. */
  private coolUntil = 0
  /** A Retry-After (capped) opened it: refused until then, whatever the failures count or a late success says. */
  private notBefore = 0
  private probing = false
  private readonly opts: BreakerOptions
  private readonly now: () => number
  private readonly retryAfterCapMs: number

  constructor (opts: BreakerOptions) {
    this.opts = opts
    this.now = opts.now ?? Date.now
    this.retryAfterCapMs = opts.retryAfterCapMs ?? DEFAULT_RETRY_AFTER_CAP_MS
  }

  get state (): BreakerState { return this._state }

  /** May a call go to this provider now? (A half-open circuit lets exactly one through until its verdict.) */
  allow (): boolean {
    if (this._state === 'closed') return true
    if (this._state === 'open') {
      const now = this.now()
      if (now < this.notBefore || now < this.coolUntil) return false
      this.set('half_open')
    }
    if (this.probing) return false
    this.probing = true
    return true
  }

  /** A call that answered closes the circuit, except during a Retry-After (a call begun before the 429 may end well). */
  success (): void {
    this.consecutive = 0
    this.probing = false
    if (this._state !== 'closed' && this.now() >= this.notBefore) this.set('closed')
  }

  /**
   * A failure before the first byte. `retryAfterMs` (a 429's or 503's) opens the circuit at once for that long, at
   * most the cap (then one probe decides, as after a cool-down), so the state says the provider is kept out.
   */
  failure (retryAfterMs?: number): void {
    const now = this.now()
    this.consecutive++
    this.probing = false
    if (retryAfterMs !== undefined) this.notBefore = Math.max(this.notBefore, now + Math.min(retryAfterMs, this.retryAfterCapMs))
    if (this._state === 'half_open' || this.consecutive >= this.opts.failures) this.coolUntil = now + this.opts.cooldownMs
    if ((now < this.notBefore || now < this.coolUntil) && this._state !== 'open') this.set('open')
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
