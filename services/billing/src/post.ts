// Billing's one way to change or read a balance: the ledger work in one transaction, then the Redis copy of what it left.
import type { Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from '@chat-platform/platform'
import type { Database } from './db/database.ts'
import { readBalance, type Balances, type LedgerRules } from './ledger.ts'
import { writeBalanceCache } from './balance-cache.ts'

type Db = Kysely<Database>
type Log = Pick<FastifyBaseLogger, 'warn'>

/** Where balances live: Postgres (the truth) and its Redis copy. */
export interface Books { db: Db, redis: Redis, log: Log }

/**
 * Runs `work` in one transaction and, once it has committed, writes the Redis copy of the balances it returns
 * (a `balances` field; best effort: a Redis failure is logged, never thrown). Returns what `work` returned.
 */
export async function commitAndCache<R extends object> (books: Books, work: (trx: Db) => Promise<R>, log: Log = books.log): Promise<R> {
  const result = await books.db.transaction().execute(work)
  const { balances } = result as { balances?: Balances }
  if (balances) await writeBalanceCache(books.redis, balances, log)
  return result
}

/**
 * The balance of `userId`, opening the account (with the signup bonus) on first access. The Redis copy is written
 * when the account was opened, and with `warm` on every read (how the copy comes back after its TTL; the version
 * guard keeps it from going back in time).
 */
export async function balanceOf (books: Books, userId: number, rules: LedgerRules, opts: { warm?: boolean, log?: Log } = {}) {
  const acc = await readBalance(books.db, userId, rules)
  if (acc.opened || opts.warm) await writeBalanceCache(books.redis, new Map([[userId, acc]]), opts.log ?? books.log)
  return acc
}
