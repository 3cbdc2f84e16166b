// Idempotency keys of POST …/messages: claimed before the exchange, completed with its answer in the same transaction.
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../database.ts'

type Db = Kysely<Database> | Transaction<Database>

export type ClaimResult =
  | { kind: 'claimed' }
  | { kind: 'replay', response: unknown }
  | { kind: 'mismatch' }
  | { kind: 'in_progress' }

/**
 * Claims `key` for this request. A key older than `ttlHours` is reused as new; an in-progress claim older
 * than `staleMs` (its holder crashed) is taken over. Takeovers are compare-and-set on `locked_at`.
 */
export async function claimIdempotencyKey (db: Db, input: { user_id: number, key: string, request_hash: string, ttlHours: number, staleMs: number }): Promise<ClaimResult> {
  const inserted = await db.insertInto('idempotency_keys')
    .values({ user_id: input.user_id, key: input.key, request_hash: input.request_hash, state: 'in_progress', response: null })
    .onConflict((oc) => oc.doNothing())
    .returning('key')
    .executeTakeFirst()
  if (inserted) return { kind: 'claimed' }
  const row = await db.selectFrom('idempotency_keys')
    // locked_at as text: a JS Date would drop the microseconds the compare-and-set below needs.
    .select(['request_hash', 'state', 'response', sql<string>`locked_at::text`.as('lock'), sql<boolean>`created_at < now() - make_interval(hours => ${input.ttlHours})`.as('expired'), sql<boolean>`locked_at < now() - make_interval(secs => ${input.staleMs / 1000})`.as('stale')])
    .where('user_id', '=', input.user_id).where('key', '=', input.key)
    .executeTakeFirst()
  if (!row) return await claimIdempotencyKey(db, input)
  const takeOver = row.expired || (row.state === 'in_progress' && row.stale && row.request_hash === input.request_hash)
  if (takeOver) {
    const res = await db.updateTable('idempotency_keys')
      .set({ request_hash: input.request_hash, state: 'in_progress', response: null, created_at: sql`now()`, locked_at: sql`now()` })
      .where('user_id', '=', input.user_id).where('key', '=', input.key).where(sql<string>`locked_at::text`, '=', row.lock)
      .executeTakeFirst()
    return Number(res.numUpdatedRows) === 1 ? { kind: 'claimed' } : { kind: 'in_progress' }
  }
  if (row.request_hash !== input.request_hash) return { kind: 'mismatch' }
  if (row.state === 'done') return { kind: 'replay', response: row.response }
  return { kind: 'in_progress' }
}

export async function completeIdempotencyKey (db: Db, userId: number, key: string, response: unknown): Promise<void> {
  await db.updateTable('idempotency_keys').set({ state: 'done', response: JSON.stringify(response) })
    .where('user_id', '=', userId).where('key', '=', key).execute()
}

/** Frees a claim whose exchange charged nothing, so the client may retry with the same key. */
export async function releaseIdempotencyKey (db: Db, userId: number, key: string): Promise<void> {
  await db.deleteFrom('idempotency_keys').where('user_id', '=', userId).where('key', '=', key).where('state', '=', 'in_progress').execute()
}

export async function deleteExpiredIdempotencyKeys (db: Db, ttlHours: number): Promise<number> {
  const res = await db.deleteFrom('idempotency_keys').where('created_at', '<', sql<Date>`now() - make_interval(hours => ${ttlHours})`).executeTakeFirst()
  return Number(res.numDeletedRows)
}

/** Keeps a long exchange's claim from looking abandoned. */
export async function touchIdempotencyKey (db: Db, userId: number, key: string): Promise<void> {
  await db.updateTable('idempotency_keys').set({ locked_at: sql`now()` })
    .where('user_id', '=', userId).where('key', '=', key).where('state', '=', 'in_progress').execute()
}
