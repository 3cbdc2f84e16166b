// Queries on chat messages.
import type { Kysely, Transaction } from 'kysely'
import type { ChatMessage } from '@chat-platform/contracts'
import type { Database, MessageRow, MessageUpdate } from '../database.ts'

type Db = Kysely<Database> | Transaction<Database>

export const toMessage = (row: MessageRow): ChatMessage => ({
  id: row.id,
  session_id: row.session_id,
  content: row.content,
  role: row.role,
  tokens: row.tokens,
  created_at: row.created_at.toISOString(),
  superseded: row.superseded
})

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
