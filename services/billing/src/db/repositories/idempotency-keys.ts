// Queries on idempotency_keys: a recharge's key, the hash of its request and the answer it got.
import { sql, type Kysely } from 'kysely'
import type { Database } from '../database.ts'

type Db = Kysely<Database>

/**
 * Claims a key for this request. A concurrent claim of the same key waits on the unique index until the
 * first transaction ends, then sees its row: that is what keeps two concurrent retries from crediting twice.
 */
export async function claimIdempotencyKey (db: Db, userId: number, key: string, requestHash: string): Promise<boolean> {
  const row = await db.insertInto('idempotency_keys').values({ user_id: userId, key, request_hash: requestHash, response_status: null, response_body: null })
    .onConflict((oc) => oc.columns(['user_id', 'key']).doNothing())
    .returning('key').executeTakeFirst()
  return row !== undefined
}

export async function selectIdempotencyKey (db: Db, userId: number, key: string) {
  return await db.selectFrom('idempotency_keys').select(['request_hash', 'response_status', 'response_body'])
    .where('user_id', '=', userId).where('key', '=', key).executeTakeFirst()
}

export async function saveIdempotentResponse (db: Db, userId: number, key: string, status: number, body: unknown): Promise<void> {
  await db.updateTable('idempotency_keys').set({ response_status: status, response_body: JSON.stringify(body) })
    .where('user_id', '=', userId).where('key', '=', key).execute()
}

export async function deleteExpiredIdempotencyKeys (db: Db, ttlHours: number): Promise<number> {
  const res = await db.deleteFrom('idempotency_keys').where('created_at', '<', sql<Date>`now() - make_interval(hours => ${ttlHours})`).executeTakeFirst()
  return Number(res.numDeletedRows)
}
