// Queries on `refresh_families` (sessions) and `refresh_tokens`.
import { sql, type Kysely } from 'kysely'
import type { Database, RefreshFamily } from '../database.ts'

type Db = Kysely<Database>

export async function insertRefreshFamily (db: Db, family: { id: string, user_id: number }): Promise<void> {
  await db.insertInto('refresh_families').values(family).execute()
}

export async function insertRefreshToken (db: Db, token: { token_hash: Buffer, family_id: string, expires_at: Date }): Promise<void> {
  await db.insertInto('refresh_tokens').values(token).execute()
}

/** The token and its family, the family row locked (rotation and reuse of one family are serialized). */
export async function lockRefreshToken (db: Db, tokenHash: Buffer) {
  return await db.selectFrom('refresh_tokens as t')
    .innerJoin('refresh_families as f', 'f.id', 't.family_id')
    .select(['t.family_id', 't.expires_at', 't.rotated_at', 'f.user_id', 'f.revoked_at'])
    .select(sql<boolean>`t.expires_at <= now()`.as('expired'))
    .where('t.token_hash', '=', tokenHash)
    .forUpdate()
    .executeTakeFirst()
}

/** Marks the token rotated; false if another request rotated it first. */
export async function markRefreshTokenRotated (db: Db, tokenHash: Buffer): Promise<boolean> {
  const r = await db.updateTable('refresh_tokens').set({ rotated_at: sql<Date>`now()` })
    .where('token_hash', '=', tokenHash).where('rotated_at', 'is', null).executeTakeFirst()
  return r.numUpdatedRows === 1n
}

/** Revokes the family if it is still live; returns whether this call revoked it. */
export async function revokeRefreshFamily (db: Db, id: string, reason: string): Promise<boolean> {
  const r = await db.updateTable('refresh_families').set({ revoked_at: sql<Date>`now()`, revoked_reason: reason })
    .where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst()
  return r.numUpdatedRows === 1n
}

/** Revokes every live family of the user; returns their ids. */
export async function revokeUserRefreshFamilies (db: Db, userId: number, reason: string): Promise<string[]> {
  const rows = await db.updateTable('refresh_families').set({ revoked_at: sql<Date>`now()`, revoked_reason: reason })
    .where('user_id', '=', userId).where('revoked_at', 'is', null).returning('id').execute()
  return rows.map((r) => r.id)
}

export async function findRefreshFamily (db: Db, id: string): Promise<RefreshFamily | undefined> {
  return await db.selectFrom('refresh_families').selectAll().where('id', '=', id).executeTakeFirst()
}

/** Drops the tokens of revoked families and tokens past their expiry (they can never be exchanged again). */
export async function deleteDeadRefreshTokens (db: Db, userId: number): Promise<void> {
  await db.deleteFrom('refresh_tokens')
    .where('family_id', 'in', (qb) => qb.selectFrom('refresh_families').select('id').where('user_id', '=', userId))
    .where((eb) => eb.or([
      eb('expires_at', '<=', sql<Date>`now()`),
      eb('family_id', 'in', (qb) => qb.selectFrom('refresh_families').select('id').where('user_id', '=', userId).where('revoked_at', 'is not', null))
    ]))
    .execute()
}
