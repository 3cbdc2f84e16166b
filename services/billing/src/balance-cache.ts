// The Redis copy of each balance (contracts' `balanceCacheKey`, 1 day), written after the commit that changed it.
import { balanceCacheKey, encodeBalanceCache } from '@chat-platform/contracts'
import type { Redis } from '@chat-platform/platform'
import type { FastifyBaseLogger } from 'fastify'
import type { Balances } from './ledger.ts'

export const BALANCE_TTL_SECONDS = 86_400
const versionKey = (userId: number) => `billing:balance-version:${userId}`

// Two commits can reach Redis out of order; the version (bumped with each change) keeps the newest value. One call
// writes every balance a commit changed: KEYS are (value, version) pairs, ARGV[1] the TTL, then (value, version)
// pairs in the same order (one command per commit instead of one per user: the per-command cost in ioredis and in
// Redis was most of the refresh's CPU).
const SET_MANY_IF_NEWER = `
local written = 0
for i = 1, #KEYS, 2 do
  local current = tonumber(redis.call('GET', KEYS[i + 1]) or '-1')
  if tonumber(ARGV[i + 2]) >= current then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
    redis.call('SET', KEYS[i + 1], ARGV[i + 2], 'EX', ARGV[1])
    written = written + 1
  end
end
return written`

const CHUNK = 500
type SetMany = (keyCount: number, ...keysThenArgs: string[]) => Promise<number>

/**
 * Best effort: Postgres is the truth, so a Redis failure is logged and never fails the caller. The value holds
 * the balance and chat_applied of the same commit (chat's admission needs the pair, never one without the other).
 */
export async function writeBalanceCache (redis: Redis, balances: Balances, log: Pick<FastifyBaseLogger, 'warn'>): Promise<void> {
  if (balances.size === 0) return
  try {
    // defineCommand sends EVALSHA (the script once per connection), not the script text per call.
    if (!('billingSetManyIfNewer' in redis)) redis.defineCommand('billingSetManyIfNewer', { lua: SET_MANY_IF_NEWER })
    const setMany = (redis as Redis & { billingSetManyIfNewer: SetMany }).billingSetManyIfNewer.bind(redis)
    const calls: Promise<number>[] = []
    let keys: string[] = []
    let args: string[] = [String(BALANCE_TTL_SECONDS)]
    for (const [userId, { balance, chat_applied: chatApplied, version }] of balances) {
      keys.push(balanceCacheKey(userId), versionKey(userId))
      args.push(encodeBalanceCache({ balance, chat_applied: chatApplied }), String(version))
      // At most CHUNK users a call (a replay's batches can be large; arguments are spread).
      if (keys.length === 2 * CHUNK) {
        calls.push(setMany(keys.length, ...keys, ...args))
        keys = []
        args = [String(BALANCE_TTL_SECONDS)]
      }
    }
    if (keys.length > 0) calls.push(setMany(keys.length, ...keys, ...args))
    await Promise.all(calls)
  } catch (err) {
    log.warn({ err: (err as Error).message, users: [...balances.keys()].slice(0, 10) }, 'balance cache not updated')
  }
}
