// The 402 pre-check: the user's balance from billing's Redis copy, else billing's internal endpoint.
import { callServiceOrNull, unauthorized, type Redis } from '@chat-platform/platform'
import type { FastifyBaseLogger as Logger } from 'fastify'

export const balanceKey = (userId: number) => `billing:balance:${userId}`

function parseCached (v: string | null): number | undefined {
  if (v === null) return undefined
  const n = Number(v)
  if (Number.isFinite(n)) return n
  try {
    const b = (JSON.parse(v) as { balance?: unknown }).balance
    return typeof b === 'number' && Number.isFinite(b) ? b : undefined
  } catch { return undefined }
}

/**
 * The balance; throws 503 `service_unavailable` when neither Redis nor billing can tell, and 401 when
 * billing does not know the user (a token for a user id that does not exist). `cached` is the Redis copy when
 * the caller already read it (null: not in Redis), undefined to read it here.
 */
export async function readBalance (ctx: { redis: Redis, billingUrl: string, log: Logger, requestId?: string }, userId: number, cached?: string | null): Promise<number> {
  if (cached !== undefined) {
    const v = parseCached(cached)
    if (v !== undefined) return v
  } else {
    try {
      const v = parseCached(await ctx.redis.get(balanceKey(userId)))
      if (v !== undefined) return v
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message }, 'redis unavailable: reading the balance from billing')
    }
  }
  const res = await callServiceOrNull<{ user_id: number, balance: number }>(ctx.billingUrl, `/internal/balances/${userId}`, { requestId: ctx.requestId })
  if (!res) throw unauthorized('The bearer token is invalid or expired.')
  return res.balance
}
