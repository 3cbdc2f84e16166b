// The Redis copy of each balance (`billing:balance:<user_id>`, 1 day), written after the commit that changed it.
import type { Redis } from '@chat-platform/platform'
import type { FastifyBaseLogger } from 'fastify'

export const BALANCE_TTL_SECONDS = 86_400
export const balanceKey = (userId: number) => `billing:balance:${userId}`
const versionKey = (userId: number) => `billing:balance-version:${userId}`

// Two commits can reach Redis out of order; the version (bumped with each change) keeps the newest value.
const SET_IF_NEWER = `
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) < current then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1`

/** Best effort: Postgres is the truth, so a Redis failure is logged and never fails the caller. */
export async function writeBalanceCache (redis: Redis, balances: Map<number, { balance: number, version: number }>, log: Pick<FastifyBaseLogger, 'warn'>): Promise<void> {
  if (balances.size === 0) return
  try {
    // defineCommand sends EVALSHA (the script once per connection), not the script text per user.
    if (!('billingSetIfNewer' in redis)) redis.defineCommand('billingSetIfNewer', { numberOfKeys: 2, lua: SET_IF_NEWER })
    const pipe = redis.pipeline() as ReturnType<Redis['pipeline']> & { billingSetIfNewer: (...args: string[]) => unknown }
    for (const [userId, { balance, version }] of balances) {
      pipe.billingSetIfNewer(balanceKey(userId), versionKey(userId), String(balance), String(version), String(BALANCE_TTL_SECONDS))
    }
    const results = await pipe.exec()
    const failed = results?.find(([err]) => err)
    if (failed) throw failed[0]
  } catch (err) {
    log.warn({ err: (err as Error).message, users: [...balances.keys()].slice(0, 10) }, 'balance cache not updated')
  }
}
