// Billing's Redis copy of a balance (`billing:balance:<user_id>`): the key and the value's codec. Billing writes it; chat and auth read it
// (or ask billing: GET /internal/balances/:user_id, internal.ts, answers the same pair).
import { Type, type Static } from 'typebox'

/** The key, under each service's REDIS_PREFIX. */
export const balanceCacheKey = (userId: number) => `billing:balance:${userId}`

/**
 * What billing knows after one commit: the balance, and `chat_applied`, the sum of the `estimated_amount` of
 * every usage event it has applied for the user (both from the same commit). Chat subtracts from the balance
 * what it has recorded beyond `chat_applied`: charges billing has not applied yet.
 */
export const BalanceCopySchema = Type.Object({
  balance: Type.Integer(),
  chat_applied: Type.Integer({ minimum: 0 })
})
export type BalanceCopy = Static<typeof BalanceCopySchema>

export const encodeBalanceCache = (copy: BalanceCopy): string => `${copy.balance}:${copy.chat_applied}`

const CACHED = /^(-?\d{1,18}):(\d{1,18})$/

/**
 * The copy, or undefined for a missing or unreadable value (a reader then asks billing). The value is
 * `<balance>:<chat_applied>`, two integers: parsing it costs less than JSON on a path every send takes.
 */
export function decodeBalanceCache (raw: string | null | undefined): BalanceCopy | undefined {
  if (raw == null) return undefined
  const m = CACHED.exec(raw)
  return m ? { balance: Number(m[1]), chat_applied: Number(m[2]) } : undefined
}
