// The 402 pre-check: billing's last known balance (its Redis copy, else its internal endpoint) minus what chat charged that billing has not applied.
import { decodeBalanceCache, priceExchange, balanceCacheKey, type BalanceCopy, type ModelPrices } from '@chat-platform/contracts'
import { billingInternal, ProblemError, unauthorized, type Redis } from '@chat-platform/platform'
import type { FastifyBaseLogger as Logger } from 'fastify'
import type { OwnCharges } from './db/repositories/exchanges.ts'

/**
 * Billing's copy of the balance; throws 503 `service_unavailable` when neither Redis nor billing can tell
 * (never admitted blind), and 401 when billing does not know the user (a token for a user id that does not
 * exist). `cached` is the Redis value when the caller already read it (null: not in Redis), undefined to read it here.
 */
export async function readBalanceCopy (ctx: { redis: Redis, billingUrl: string, log: Logger, requestId?: string }, userId: number, cached?: string | null): Promise<BalanceCopy> {
  if (cached !== undefined) {
    const v = decodeBalanceCache(cached)
    if (v) return v
  } else {
    try {
      const v = decodeBalanceCache(await ctx.redis.get(balanceCacheKey(userId)))
      if (v) return v
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message }, 'redis unavailable: reading the balance from billing')
    }
  }
  const res = await billingInternal(ctx.billingUrl).balance(userId, { requestId: ctx.requestId })
  if (!res) throw unauthorized('The bearer token is invalid or expired.')
  // A billing from before chat_applied existed cannot say what it applied: admitting on its balance alone would
  // be admitting blind (deploy billing first).
  if (!Number.isSafeInteger(res.balance) || !Number.isSafeInteger(res.chat_applied)) {
    throw new ProblemError('service_unavailable', 'A service this request needs is unavailable; try again shortly.', { cause: new Error(`billing's balance answer has no chat_applied: ${JSON.stringify(res)}`) })
  }
  return { balance: res.balance, chat_applied: res.chat_applied }
}

/**
 * The balance a send is admitted on (DESIGN §3): billing's balance minus every charge chat recorded that billing
 * had not applied when it wrote that balance (`recorded − chat_applied`: both are sums of the same per-event
 * prices, so which events are missing does not matter, nor their order), minus the least each exchange left
 * pending by a dead process will cost (its prompt). A copy older than chat's charges only lowers the result.
 */
export function admissionBalance (copy: BalanceCopy, charges: OwnCharges, prices: ModelPrices, defaultModel: string): number {
  const unapplied = Math.max(0, charges.recorded - copy.chat_applied)
  const stale = charges.stale.reduce((sum, x) => sum + priceExchange(prices, x.model ?? defaultModel, x.prompt_tokens, 0), 0)
  return copy.balance - unapplied - stale
}
