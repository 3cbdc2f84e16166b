// A user's token balance (owned by billing): the Redis copy billing writes (contracts' key and codec), else billing's internal endpoint.
import type { FastifyBaseLogger as Logger } from 'fastify'
import { balanceCacheKey, decodeBalanceCache, internalBalancePath } from '@chat-platform/contracts'
import { billingInternal, ServiceCallError, type Redis } from '@chat-platform/platform'

/**
 * Reads billing's copy; on a miss (or with Redis away, or a value it cannot read) asks billing, which opens the
 * account on first access. Billing unreachable with no cached value is 503 `service_unavailable` (a
 * ServiceCallError): showing 0 would be a wrong answer, not a degraded one; so is billing not knowing the user.
 */
export async function readTokens (redis: Redis, billingUrl: string, userId: number, opts: { requestId?: string, log?: Logger } = {}): Promise<number> {
  try {
    const cached = decodeBalanceCache(await redis.get(balanceCacheKey(userId)))
    if (cached) return cached.balance
  } catch (err) {
    opts.log?.warn({ err: (err as Error).message }, 'balance cache unavailable; asking billing')
  }
  const res = await billingInternal(billingUrl).balance(userId, { requestId: opts.requestId })
  if (res === null) {
    throw new ServiceCallError({ service: new URL(billingUrl).host, method: 'GET', path: internalBalancePath(userId), status: 404, upstreamCode: 'not_found', upstreamDetail: 'billing does not know the user' })
  }
  return res.balance
}
