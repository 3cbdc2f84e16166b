// The Redis copy of each balance (contracts' `balanceCacheKey`, 1 day), written after the commit that changed it.
import { balanceCacheKey, encodeBalanceCache } from '@chat-platform/contracts'
import type { Redis } from '@chat-platform/platform'
import type { FastifyBaseLogger } from 'fastify'
import type { Balances } from './ledger.ts'

export const BALANCE_TTL_SECONDS = 86_400
const versionKey = (userId: number) => `billing:balance-version:${userId}`

// Two commits can reach Redis out of order; the version (bumped with each change) keeps the newest value.
const SET_IF_NEWER = `
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) < current then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1`

/**
 * Best effort: Postgres is the truth, so a Redis failure is logged and never fails the caller. The value holds
 * the balance and chat_applied of the same commit (chat's admission needs the pair, never one without the other).
 */
export async function writeBalanceCache (redis: Redis, balances: Balances, log: Pick<FastifyBaseLogger, 'warn'>): Promise<void> {
  if (balances.size === 0) return
  try {
    // defineCommand sends EVALSHA (the script once per connection), not the script text per user.
    if (!('billingSetIfNewer' in redis)) redis.defineCommand('billingSetIfNewer', { numberOfKeys: 2, lua: SET_IF_NEWER })
    const pipe = redis.pipeline() as ReturnType<Redis['pipeline']> & { billingSetIfNewer: (...args: string[]) => unknown }
    for (const [userId, { balance, chat_applied: chatApplied, version }] of balances) {
      pipe.billingSetIfNewer(balanceCacheKey(userId), versionKey(userId), encodeBalanceCache({ balance, chat_applied: chatApplied }), String(version), String(BALANCE_TTL_SECONDS))
    }
    const results = await pipe.exec()
    const failed = results?.find(([err]) => err)
    if (failed) throw failed[0]
  } catch (err) {
    log.warn({ err: (err as Error).message, users: [...balances.keys()].slice(0, 10) }, 'balance cache not updated')
  }
}
