// Password hashing: argon2id at OWASP's parameters, set explicitly, and a dummy hash for unknown emails.
import { randomBytes } from 'node:crypto'
import { hash, verify, parseOptions } from '@node-rs/argon2'

// `Algorithm.Argon2id` is a const enum, which isolatedModules cannot import; its value is 2.
const ARGON2ID = 2
/** OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 (the library defaults have changed between versions). */
export const PASSWORD_HASH_OPTIONS = { algorithm: ARGON2ID, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const

export async function hashPassword (password: string): Promise<string> {
  return await hash(password, PASSWORD_HASH_OPTIONS)
}

let dummy: Promise<string> | undefined
/** A hash of a random password with the same parameters, so an unknown email costs what a wrong password costs. */
export function dummyHash (): Promise<string> {
  dummy ??= hashPassword(randomBytes(32).toString('base64url'))
  return dummy
}

/**
 * True only when `stored` is a hash and `password` matches it. With no stored hash (unknown email,
 * WeChat-only user) the dummy hash is verified anyway and the answer is false: every call does exactly one
 * argon2 verification, which `onVerify` (a metrics counter) is told about.
 */
export async function verifyPassword (stored: string | null | undefined, password: string, onVerify?: () => void): Promise<boolean> {
  const target = stored ?? await dummyHash()
  onVerify?.()
  const ok = await verify(target, password).catch(() => false)
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
