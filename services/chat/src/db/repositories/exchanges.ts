// The queries of one exchange that span tables: the session with its recent turns, and the recorded reply.
import { sql, type Kysely, type Transaction } from 'kysely'
import type { UsageRecorded } from '@chat-platform/contracts'
import { outboxChannel } from '@chat-platform/platform'
import { SCHEMA, type Database, type MessageRow, type NewMessage, type SessionRow } from '../database.ts'

type Db = Kysely<Database> | Transaction<Database>

export type ContextMessage = Pick<MessageRow, 'id' | 'role' | 'content' | 'content_tokens'>

/**
 * The user's session and its newest turns that may go into a prompt (newest first), in one round trip:
 * replies, and user messages that got one (pending and failed ones are left out, so no dangling turn is sent).
 * Undefined when the session is not this user's.
 */
export async function findSessionWithContext (db: Db, sessionId: number, userId: number, limit: number): Promise<{ session: SessionRow, history: ContextMessage[] } | undefined> {
  const { rows } = await sql<SessionRow & { m_id: number | null, m_role: 'user' | 'assistant' | null, m_content: string | null, m_content_tokens: number | null }>`
    select s.id, s.user_id, s.title, s.created_at, m.id as m_id, m.role as m_role, m.content as m_content, m.content_tokens as m_content_tokens
    from sessions s
    left join lateral (
      select id, role, content, content_tokens from messages
      where session_id = s.id and (role = 'assistant' or status = 'ok')
      order by id desc limit ${limit}
    ) m on true
    where s.id = ${sessionId} and s.user_id = ${userId}
    order by m.id desc`.execute(db)
  if (rows.length === 0) return undefined
  const { id, user_id: uid, title, created_at: createdAt } = rows[0]
  const history = rows.filter((r) => r.m_id !== null).map((r) => ({ id: r.m_id!, role: r.m_role!, content: r.m_content!, content_tokens: r.m_content_tokens! }))
  return { session: { id, user_id: uid, title, created_at: createdAt }, history }
}

/** Inserts the user's message and reserves the id its reply will have (so the usage event can name it up front). */
export async function insertUserMessage (db: Db, values: NewMessage): Promise<MessageRow & { reply_id: number }> {
  return await db.insertInto('messages').values(values).returningAll()
    .returning(sql<number>`nextval(pg_get_serial_sequence('messages', 'id'))`.as('reply_id'))
    .executeTakeFirstOrThrow()
}

export interface RecordedReply {
  userMessageId: number
  promptTokens: number
  reply: Pick<MessageRow, 'id' | 'session_id' | 'user_id' | 'content' | 'tokens' | 'content_tokens' | 'status' | 'error_code'>
  event: UsageRecorded
  subject: string
  requestId?: string
}

/**
 * Records an answered exchange in one statement (so one round trip, atomic on its own): the reply (if the
 * session still exists; its key-share lock keeps it from being deleted meanwhile), the user message marked
 * ok with its prompt tokens, the usage row, the usage event in the outbox, and the relay's wake-up (NOTIFY is
 * delivered at commit). Returns the stored reply, or undefined when the session was deleted mid-exchange
 * (the usage is recorded and charged all the same; its message id then points at no stored message).
 */
export async function recordReply (db: Db, r: RecordedReply): Promise<MessageRow | undefined> {
  const { reply, event } = r
  const { rows } = await sql<MessageRow | { id: null }>`
    with alive as (select id from sessions where id = ${reply.session_id} for key share),
    reply as (
      insert into messages (id, session_id, user_id, role, content, tokens, content_tokens, status, error_code) overriding system value
      select ${reply.id}, ${reply.session_id}, ${reply.user_id}, 'assistant', ${reply.content}, ${reply.tokens}, ${reply.content_tokens}, ${reply.status}, ${reply.error_code} from alive
      returning *
    ),
    asked as (
      update messages set tokens = ${r.promptTokens}, status = 'ok', error_code = null
      where id = ${r.userMessageId} and exists (select 1 from alive)
    ),
    used as (
      insert into usage (event_id, user_id, session_id, message_id, model, prompt_tokens, completion_tokens, usage_source, occurred_at)
      values (${event.event_id}, ${event.user_id}, ${event.session_id}, ${event.message_id}, ${event.model}, ${event.prompt_tokens}, ${event.completion_tokens}, ${event.usage_source}, ${event.occurred_at})
    ),
    queued as (
      insert into outbox (id, subject, payload, request_id) values (${event.event_id}, ${r.subject}, ${JSON.stringify(event)}, ${r.requestId ?? null})
    )
    select reply.* from (select pg_notify(${outboxChannel(SCHEMA)}, '')) as woken left join reply on true`.execute(db)
  const row = rows[0]
  return row && row.id !== null ? row as MessageRow : undefined
}
