// A user's token balance (owned by billing): the Redis cache billing writes, else billing's internal endpoint.
import type { FastifyBaseLogger as Logger } from 'fastify'
import { callService, type Redis } from '@chat-platform/platform'

export const balanceKey = (userId: number) => `billing:balance:${userId}`

/**
 * Reads `billing:balance:<id>`; on a miss (or with Redis away) asks billing, which opens the account on
 * first access. Billing unreachable with no cached value is 503 `service_unavailable` (from callService):
 * showing 0 would be a wrong answer, not a degraded one.
 */
export async function readTokens (redis: Redis, billingUrl: string, userId: number, opts: { requestId?: string, log?: Logger } = {}): Promise<number> {
  try {
    const cached = await redis.get(balanceKey(userId))
    if (cached !== null && /^-?\d+$/.test(cached)) return Number(cached)
  } catch (err) {
    opts.log?.warn({ err: (err as Error).message }, 'balance cache unavailable; asking billing')
  }
  const res = await callService<{ user_id: number, balance: number }>(billingUrl, `/internal/balances/${userId}`, { requestId: opts.requestId })
  return res.balance
}
