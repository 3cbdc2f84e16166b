// Queries on redemption_batches and redemption_codes.
import { sql, type Kysely } from 'kysely'
import type { Database } from '../database.ts'

type Db = Kysely<Database>

export async function insertRedemptionBatch (db: Db, batch: { admin_id: number, tokens: number, count: number, expires_at: Date | null, note: string | null }): Promise<number> {
  const row = await db.insertInto('redemption_batches').values(batch).returning('id').executeTakeFirstOrThrow()
  return row.id
}

export async function insertRedemptionCodes (db: Db, batchId: number, hashes: Buffer[]): Promise<void> {
  await sql`insert into redemption_codes (batch_id, code_hash) select ${batchId}, h from unnest(${hashes}::bytea[]) as h`.execute(db)
}

/**
 * Marks the code used by `userId` if it is unused and its batch has not expired; undefined otherwise. Under READ
 * COMMITTED a second UPDATE of the same row waits for the first to commit, then re-checks `used_at is null` and skips it.
 */
export async function claimRedemptionCode (db: Db, hash: Buffer, userId: number): Promise<{ id: number, batch_id: number, tokens: number } | undefined> {
  const res = await sql<{ id: number, batch_id: number, tokens: number }>`
    update redemption_codes c set used_by = ${userId}, used_at = now()
    from redemption_batches b
    where c.code_hash = ${hash} and c.used_at is null and b.id = c.batch_id and (b.expires_at is null or b.expires_at > now())
    returning c.id, c.batch_id, b.tokens`.execute(db)
  return res.rows[0]
}

export async function selectRedemptionCode (db: Db, hash: Buffer) {
  return await db.selectFrom('redemption_codes as c').innerJoin('redemption_batches as b', 'b.id', 'c.batch_id')
    .select(['c.id', 'c.batch_id', 'c.used_at', 'b.expires_at']).where('c.code_hash', '=', hash).executeTakeFirst()
}
