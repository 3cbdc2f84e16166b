// Queries on chat sessions; every read, update and delete is scoped to the owning user.
import type { Kysely, Transaction, Updateable } from 'kysely'
import type { SessionWithSettings } from '@chat-platform/contracts'
import type { Database, SessionRow, SessionsTable } from '../database.ts'

type Db = Kysely<Database> | Transaction<Database>

export const toSession = (row: SessionRow): SessionWithSettings => ({
  id: row.id,
  user_id: row.user_id,
  title: row.title,
  created_at: row.created_at.toISOString(),
  model: row.model ?? null,
  system_prompt: row.system_prompt ?? null
})

export async function insertSession (db: Db, values: { user_id: number, title: string, model?: string | null, system_prompt?: string | null }): Promise<SessionRow> {
  return await db.insertInto('sessions').values(values).returningAll().executeTakeFirstOrThrow()
}

export async function findSession (db: Db, id: number, userId: number): Promise<SessionRow | undefined> {
  return await db.selectFrom('sessions').selectAll().where('id', '=', id).where('user_id', '=', userId).executeTakeFirst()
}

/** Changes the given fields of the user's session; undefined when it is not theirs (or gone). */
export async function updateSession (db: Db, id: number, userId: number, values: Pick<Updateable<SessionsTable>, 'title' | 'model' | 'system_prompt'>): Promise<SessionRow | undefined> {
  if (Object.keys(values).length === 0) return await findSession(db, id, userId)
  return await db.updateTable('sessions').set(values).where('id', '=', id).where('user_id', '=', userId).returningAll().executeTakeFirst()
}

/** Newest first; `beforeId` is the cursor (the last id of the previous page). */
export async function listSessions (db: Db, userId: number, opts: { limit: number, beforeId?: number }): Promise<SessionRow[]> {
  return await db.selectFrom('sessions').selectAll()
    .where('user_id', '=', userId)
    .$if(opts.beforeId !== undefined, (q) => q.where('id', '<', opts.beforeId!))
    .orderBy('id', 'desc')
    .limit(opts.limit)
    .execute()
}

/** Deletes the session and (by cascade) its messages; usage rows stay. */
export async function deleteSession (db: Db, id: number, userId: number): Promise<boolean> {
  const res = await db.deleteFrom('sessions').where('id', '=', id).where('user_id', '=', userId).executeTakeFirst()
  return Number(res.numDeletedRows) > 0
}
