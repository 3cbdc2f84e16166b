// Queries on accounts: open, lock, change balances atomically, read.
import { sql, type Kysely } from 'kysely'
import type { Database } from '../database.ts'

type Db = Kysely<Database>

/** Inserts accounts (balance 0) for the users that have none; returns the ids it created. */
export async function insertMissingAccounts (db: Db, userIds: number[]): Promise<number[]> {
  if (userIds.length === 0) return []
  // Sorted input: concurrent batches meet the same users in the same order.
  const { rows } = await sql<{ user_id: number }>`
    insert into accounts (user_id, balance)
    select u, 0 from unnest(${[...userIds].sort((a, b) => a - b)}::bigint[]) as u
    on conflict (user_id) do nothing
    returning user_id`.execute(db)
  return rows.map((r) => Number(r.user_id))
}

/** Row-locks accounts in user_id order, so that batches touching several users never deadlock. */
export async function lockAccounts (db: Db, userIds: number[]): Promise<void> {
  await db.selectFrom('accounts').select('user_id').where('user_id', '=', sql<number>`any(${userIds}::bigint[])`)
    .orderBy('user_id').forUpdate().execute()
}

/**
 * Adds deltas to balances (and to `chat_applied`) in one atomic UPDATE … RETURNING (the row lock it takes
 * lasts until commit, so the returned balance is the one the ledger rows of this transaction must end at).
 */
export async function addToBalances (db: Db, changes: { user_id: number, delta: number, rows: number, applied?: number }[]): Promise<Map<number, { balance: number, chat_applied: number, version: number }>> {
  if (changes.length === 0) return new Map()
  const { rows } = await sql<{ user_id: number, balance: number, chat_applied: number, version: number }>`
    update accounts a
    set balance = a.balance + d.delta, chat_applied = a.chat_applied + d.applied, version = a.version + d.n, updated_at = now()
    from unnest(${changes.map((c) => c.user_id)}::bigint[], ${changes.map((c) => c.delta)}::bigint[], ${changes.map((c) => c.rows)}::bigint[], ${changes.map((c) => c.applied ?? 0)}::bigint[]) as d(user_id, delta, n, applied)
    where a.user_id = d.user_id
    returning a.user_id, a.balance, a.chat_applied, a.version`.execute(db)
  return new Map(rows.map((r) => [Number(r.user_id), { balance: Number(r.balance), chat_applied: Number(r.chat_applied), version: Number(r.version) }]))
}

export async function selectAccount (db: Db, userId: number): Promise<{ balance: number, chat_applied: number, version: number } | undefined> {
  const row = await db.selectFrom('accounts').select(['balance', 'chat_applied', 'version']).where('user_id', '=', userId).executeTakeFirst()
  return row && { balance: Number(row.balance), chat_applied: Number(row.chat_applied), version: Number(row.version) }
}

/** Which of these users have an account. */
export async function selectAccountIds (db: Db, userIds: number[]): Promise<Set<number>> {
  if (userIds.length === 0) return new Set()
  const rows = await db.selectFrom('accounts').select('user_id').where('user_id', 'in', userIds).execute()
  return new Set(rows.map((r) => Number(r.user_id)))
}
