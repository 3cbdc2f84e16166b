// Queries on chat messages.
import { sql, type Kysely, type Transaction } from 'kysely'
import type { ChatMessage } from '@chat-platform/contracts'
import type { Database, MessageRow, MessageUpdate, NewMessage } from '../database.ts'

type Db = Kysely<Database> | Transaction<Database>

export const toMessage = (row: MessageRow): ChatMessage => ({
  id: row.id,
  session_id: row.session_id,
  content: row.content,
  role: row.role,
  tokens: row.tokens,
  created_at: row.created_at.toISOString()
})

export async function insertMessage (db: Db, values: NewMessage): Promise<MessageRow> {
  return await db.insertInto('messages').values(values).returningAll().executeTakeFirstOrThrow()
}

export async function updateMessage (db: Db, id: number, values: MessageUpdate): Promise<void> {
  await db.updateTable('messages').set(values).where('id', '=', id).execute()
}

/** A page of a session's messages, returned oldest first: the `limit` newest ones before `beforeId`. */
export async function listMessages (db: Db, sessionId: number, opts: { limit: number, beforeId?: number }): Promise<MessageRow[]> {
  const rows = await db.selectFrom('messages').selectAll()
    .where('session_id', '=', sessionId)
    .$if(opts.beforeId !== undefined, (q) => q.where('id', '<', opts.beforeId!))
    .orderBy('id', 'desc')
    .limit(opts.limit)
    .execute()
  return rows.reverse()
}

/**
 * The newest turns that may go into a prompt, newest first: replies, and user messages that got one.
 * Pending (another exchange in flight) and failed user messages are left out so no dangling turn is sent.
 */
export async function listContextMessages (db: Db, sessionId: number, beforeId: number, limit: number): Promise<Pick<MessageRow, 'id' | 'role' | 'content' | 'content_tokens'>[]> {
  if (limit === 0) return []
  return await db.selectFrom('messages').select(['id', 'role', 'content', 'content_tokens'])
    .where('session_id', '=', sessionId)
    .where('id', '<', beforeId)
    .where((eb) => eb.or([eb('role', '=', 'assistant'), eb('status', '=', 'ok')]))
    .orderBy('id', 'desc')
    .limit(limit)
    .execute()
}

/** An id from the messages sequence, for usage of an exchange whose session was deleted meanwhile. */
export async function reserveMessageId (db: Db): Promise<number> {
  const { rows } = await sql<{ id: number }>`select nextval(pg_get_serial_sequence('messages', 'id'))::bigint as id`.execute(db)
  return Number(rows[0].id)
}
