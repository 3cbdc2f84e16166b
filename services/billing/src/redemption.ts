// Redemption codes: made in batches (100 random bits each, Crockford base32), kept as sha-256, redeemed once.
import { createHash, randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import { ProblemError, notFound } from '@chat-platform/platform'
import type { Database } from './db/database.ts'
import { postEntries, type Balances, type LedgerRules } from './ledger.ts'
import { claimRedemptionCode, insertRedemptionBatch, insertRedemptionCodes, selectRedemptionCode } from './db/repositories/redemption-codes.ts'

type Db = Kysely<Database>

/** Crockford's base32: no I, L, O or U, so nothing reads as another character. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
/** 20 characters of 5 bits: 100 bits of randomness per code (DESIGN asks ≥ 80). */
export const CODE_LENGTH = 20
const GROUP = 5

/** A new code as printed: `XXXXX-XXXXX-XXXXX-XXXXX`. 256 is a multiple of 32, so `byte & 31` is uniform. */
export function generateCode (): string {
  const bytes = randomBytes(CODE_LENGTH)
  let out = ''
  for (let i = 0; i < CODE_LENGTH; i++) {
    if (i > 0 && i % GROUP === 0) out += '-'
    out += ALPHABET[bytes[i] & 31]
  }
  return out
}

/**
 * The canonical form of what a user typed: upper case, without dashes or spaces, with Crockford's look-alikes read
 * as the digits they resemble (I and L as 1, O as 0). Undefined when it cannot be a code (wrong length or character).
 */
export function normalizeCode (typed: string): string | undefined {
  const s = typed.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0')
  if (s.length !== CODE_LENGTH) return undefined
  for (const ch of s) if (!ALPHABET.includes(ch)) return undefined
  return s
}

export const hashCode = (canonical: string): Buffer => createHash('sha256').update(canonical).digest()

/** Makes a batch of `count` distinct codes; returns them in clear (the only time they exist outside the admin's hands). */
export async function createBatch (trx: Db, batch: { admin_id: number, tokens: number, count: number, expires_at: Date | null, note: string | null }): Promise<{ batch_id: number, codes: string[] }> {
  const batchId = await insertRedemptionBatch(trx, batch)
  const codes = new Set<string>()
  while (codes.size < batch.count) codes.add(generateCode())
  const list = [...codes]
  await insertRedemptionCodes(trx, batchId, list.map((c) => hashCode(normalizeCode(c)!)))
  return { batch_id: batchId, codes: list }
}

export const redemptionDescription = (batchId: number) => `兑换码 · 批次 #${batchId}`

/**
 * Redeems a code for `userId` in the caller's transaction: the code is marked used only if it is unused and its
 * batch unexpired (one UPDATE: a concurrent redeem of the same code waits on the row lock and then finds it used),
 * and its ledger row (kind redemption, source the code's id) is written in the same commit. Throws 404 not_found,
 * 409 redemption_used or 409 redemption_expired, changing nothing.
 */
export async function redeemCode (trx: Db, userId: number, typed: string, rules: LedgerRules): Promise<{ tokens: number, balances: Balances }> {
  const canonical = normalizeCode(typed)
  if (canonical === undefined) throw notFound('redemption code')
  const hash = hashCode(canonical)
  const claimed = await claimRedemptionCode(trx, hash, userId)
  if (!claimed) {
    const code = await selectRedemptionCode(trx, hash)
    if (!code) throw notFound('redemption code')
    if (code.used_at !== null) throw new ProblemError('redemption_used', 'This redemption code has already been used.')
    throw new ProblemError('redemption_expired', 'This redemption code has expired.')
  }
  const balances = await postEntries(trx, [{
    user_id: userId, change_amount: claimed.tokens, kind: 'redemption', description: redemptionDescription(claimed.batch_id), source_id: String(claimed.id)
  }], rules)
  return { tokens: claimed.tokens, balances }
}
