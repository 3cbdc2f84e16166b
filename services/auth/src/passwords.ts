// Password hashing: argon2id at OWASP's parameters, set explicitly, a dummy hash for unknown emails, and bounds on
// concurrent and waiting hashes.
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { hash, verify, parseOptions } from '@node-rs/argon2'
import { ProblemError } from '@chat-platform/platform'

// `Algorithm.Argon2id` is a const enum, which isolatedModules cannot import; its value is 2.
const ARGON2ID = 2
/** OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 (the library defaults have changed between versions). */
export const PASSWORD_HASH_OPTIONS = { algorithm: ARGON2ID, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const

/**
 * Waiting operations allowed per slot: at ~13 ms an operation, a full queue is about 0.2 s of work. Kept well
 * under what one gateway sends auth at once (`UPSTREAM_CONNECTIONS`, 128) on a few cores, so a flood meets this
 * bound, not the gateway's queue.
 */
export const WAITING_PER_SLOT = 16

/**
 * Runs at most `limit` tasks at once; up to `maxWaiting` others wait in arrival order, and a task beyond those is
 * refused at once: 503 `service_unavailable` with `Retry-After: 1`, before anything else is done for it. A finished
 * task hands its slot straight to the oldest waiter, so a newcomer cannot overtake the queue.
 */
class Slots {
  /** Tasks running now (counted around the task itself, apart from the slot bookkeeping, so tests observe the real thing). */
  inFlight = 0
  /** The highest `inFlight` seen; a test may set it back to 0. */
  maxInFlight = 0
  #taken = 0
  readonly #waiters: Array<() => void> = []

  readonly limit: number
  /** Tasks that may wait for a slot (a test may lower it). */
  maxWaiting: number

  constructor (limit: number, maxWaiting: number) {
    this.limit = limit
    this.maxWaiting = maxWaiting
  }

  get waiting (): number {
    return this.#waiters.length
  }

  /** Operations refused so far (auth_password_hash_refused_total). */
  refused = 0

  /** Throws the 503 `run` would throw now: a request can be refused before it does any other work. */
  ensureRoom (): void {
    if (this.#taken >= this.limit && this.#waiters.length >= this.maxWaiting) {
      this.refused++
      throw busy()
    }
  }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.#taken < this.limit) this.#taken++
    else {
      this.ensureRoom()
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      return await task()
    } finally {
      // A rejected or throwing task releases its slot too.
      this.inFlight--
      const next = this.#waiters.shift()
      if (next !== undefined) next()
      else this.#taken--
    }
  }
}

const busy = () => new ProblemError('service_unavailable', 'Too many sign-ins are being checked right now; try again in a moment.', { headers: { 'retry-after': '1' }, shed: true })

/**
 * Every argon2 hash and verification goes through here. Each allocates 19 MiB on libuv's thread pool (4 threads), so
 * a burst of logins held 4 × 19 MiB at once; with more operations than cores we gain no throughput, only memory (and
 * give a login flood a lever on auth's RSS). So at most one per core runs; the rest wait, first come first served,
 * up to `WAITING_PER_SLOT` per core: past that a flood is answered 503 at once instead of making every sign-in wait
 * behind it for as long as it lasts.
 */
const slots = Math.max(1, availableParallelism())
export const passwordHashing = new Slots(slots, slots * WAITING_PER_SLOT)

export async function hashPassword (password: string): Promise<string> {
  return await passwordHashing.run(() => hash(password, PASSWORD_HASH_OPTIONS))
}

let dummy: Promise<string> | undefined
/** A hash of a random password with the same parameters, so an unknown email costs what a wrong password costs. */
export function dummyHash (): Promise<string> {
  // A failed attempt (a full queue) is not kept: the next call tries again.
  dummy ??= hashPassword(randomBytes(32).toString('base64url')).catch((err: unknown) => {
    dummy = undefined
    throw err
  })
  return dummy
}

/**
 * True only when `stored` is a hash and `password` matches it. With no stored hash (unknown email,
 * WeChat-only user) the dummy hash is verified anyway and the answer is false: every call does exactly one
 * argon2 verification, which `onVerify` (a metrics counter) is told about.
 */
export async function verifyPassword (stored: string | null | undefined, password: string, onVerify?: () => void): Promise<boolean> {
  // Awaited before taking a slot: making the dummy hash needs a slot of its own.
  const target = stored ?? await dummyHash()
  // A corrupt stored hash is a wrong password; a full queue (503) is not, and propagates.
  const ok = await passwordHashing.run(async () => {
    onVerify?.()
    try {
      return await verify(target, password)
    } catch {
      return false
    }
  })
  return ok && !!stored
}

/** A stored hash made with other parameters than today's: rehash it at the next successful login. */
export function needsRehash (stored: string): boolean {
  try {
    const o = parseOptions(stored)
    return o.algorithm !== ARGON2ID || o.memoryCost !== PASSWORD_HASH_OPTIONS.memoryCost ||
      o.timeCost !== PASSWORD_HASH_OPTIONS.timeCost || o.parallelism !== PASSWORD_HASH_OPTIONS.parallelism
  } catch {
    return true
  }
}
