// The queries of one exchange that span tables: the session with its recent turns, and the recorded reply.
import { sql, type Kysely, type Transaction } from 'kysely'
import type { UsageRecorded } from '@chat-platform/contracts'
import { insertOutboxFrom, notifyOutbox } from '@chat-platform/platform'
import { SCHEMA, type Database, type MessageRow, type NewMessage, type SessionRow } from '../database.ts'

type Db = Kysely<Database> | Transaction<Database>

export type ContextMessage = Pick<MessageRow, 'id' | 'role' | 'content' | 'content_tokens'>

/** Chat's own charges for a user (readCharges): its recorded total, and pending exchanges nobody runs any more. */
export interface OwnCharges { recorded: number, stale: { model: string | null, prompt_tokens: number }[] }

/**
 * The user's session and its newest turns that may go into a prompt (newest first), in one round trip:
 * replies, and user messages that got one (pending and failed ones are left out, so no dangling turn is sent);
 * superseded replies are left out (a regenerate replaced them), and so is a reply a regeneration in flight is
 * replacing (its question is pending meanwhile: the reply alone would be an answer without its question, and it
 * is superseded a moment later; one uncorrelated look at the user's pending rows). `beforeId`: only turns before it (a regenerate
 * asks again for that user message). `withCharges`: the user's charges too (readCharges's, in the same round trip).
 * Undefined when the session is not this user's.
 */
export async function findSessionWithContext (db: Db, sessionId: number, userId: number, limit: number, beforeId?: number, withCharges = false): Promise<{ session: SessionRow, history: ContextMessage[], charges?: OwnCharges } | undefined> {
  const { rows } = await sql<SessionRow & { m_id: number | null, m_role: 'user' | 'assistant' | null, m_content: string | null, m_content_tokens: number | null, c_recorded?: string | number, c_stale?: OwnCharges['stale'] }>`
    select s.id, s.user_id, s.title, s.created_at, s.model, s.system_prompt, m.id as m_id, m.role as m_role, m.content as m_content, m.content_tokens as m_content_tokens
      ${withCharges ? sql`, ${chargesColumns(userId)}` : sql``}
    from sessions s
    left join lateral (
      select id, role, content, content_tokens from messages
      where session_id = s.id and (role = 'assistant' or status = 'ok') and not superseded
        and id <> all (array(select exchange_supersedes from messages where user_id = ${userId} and status = 'pending' and exchange_supersedes is not null))
        and (${beforeId ?? null}::bigint is null or id < ${beforeId ?? null}::bigint)
      order by id desc limit ${limit}
    ) m on true
    where s.id = ${sessionId} and s.user_id = ${userId}
    order by m.id desc`.execute(db)
  if (rows.length === 0) return undefined
  const { id, user_id: uid, title, created_at: createdAt, model, system_prompt: systemPrompt } = rows[0]
  const history = rows.filter((r) => r.m_id !== null).map((r) => ({ id: r.m_id!, role: r.m_role!, content: r.m_content!, content_tokens: r.m_content_tokens! }))
  const charges = withCharges ? { recorded: Number(rows[0].c_recorded), stale: rows[0].c_stale! } : undefined
  return { session: { id, user_id: uid, title, created_at: createdAt, model, system_prompt: systemPrompt }, history, ...(charges ? { charges } : {}) }
}

/**
 * Inserts the user's (pending) message with its lease and reserves the id its reply will have (so the usage
 * event can name the exchange up front, and the sweeper can too if this process dies).
 */
export async function insertUserMessage (db: Db, values: NewMessage & { lease_ms: number }): Promise<MessageRow & { reply_id: number }> {
  const { lease_ms: leaseMs, ...row } = values
  const inserted = await db.insertInto('messages').values({
    ...row,
    exchange_reply_id: sql<number>`nextval(pg_get_serial_sequence('messages', 'id'))`,
    lease_until: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'`
  }).returningAll().executeTakeFirstOrThrow()
  return { ...inserted, reply_id: Number(inserted.exchange_reply_id) }
}

/** Pushes a pending exchange's lease forward (its process is alive); a settled one is left alone. */
export async function renewLease (db: Db, messageId: number, leaseMs: number): Promise<void> {
  await sql`update messages set lease_until = now() + ${leaseMs} * interval '1 millisecond' where id = ${messageId} and status = 'pending'`.execute(db)
}

export interface RecordedReply {
  userMessageId: number
  promptTokens: number
  reply: Pick<MessageRow, 'id' | 'session_id' | 'user_id' | 'content' | 'tokens' | 'content_tokens' | 'status' | 'error_code'>
  event: UsageRecorded
  subject: string
  requestId?: string
  /** The send's Idempotency-Key and request, kept on the usage row. */
  idempotency?: Idempotency
  /** A regenerate: the reply the new one replaces (marked superseded in the same statement). */
  supersedes?: number
}

export interface Idempotency { key: string, request_hash: string }

// The CTEs every charge shares, after a `used` CTE that returns a row only if this exchange's usage row was
// inserted now: the event into the outbox, and the user's recorded total (what admission counts) bumped.
export const charged = (event: UsageRecorded, subject: string, requestId?: string) => sql`
    queued as (${insertOutboxFrom('used', subject, event, requestId)}),
    counted as (
      insert into user_charges (user_id, recorded) select ${event.user_id}, ${event.estimated_amount ?? 0}::bigint from used
      on conflict (user_id) do update set recorded = user_charges.recorded + excluded.recorded
    )`

// Any conflict charges nothing: the exchange's reserved reply id recorded before, or (with an Idempotency-Key,
// kept on the row for good) another exchange of the same key already charged, or the session's title charged before.
export const usageRow = (event: UsageRecorded, idempotency?: Idempotency) => sql`
    insert into usage (event_id, user_id, session_id, message_id, model, prompt_tokens, completion_tokens, usage_source, occurred_at, estimated_amount, idempotency_key, request_hash, simulated, purpose)
    values (${event.event_id}, ${event.user_id}, ${event.session_id}, ${event.message_id}, ${event.model}, ${event.prompt_tokens}, ${event.completion_tokens}, ${event.usage_source}, ${event.occurred_at}, ${event.estimated_amount ?? null}, ${idempotency?.key ?? null}, ${idempotency?.request_hash ?? null}, ${event.simulated ?? false}, ${event.purpose ?? 'exchange'})
    on conflict do nothing
    returning event_id`

/**
 * Records an answered exchange in one statement (so one round trip, atomic on its own): the usage row (unique
 * on the exchange's reserved reply id, so recording the same exchange twice charges once), and only if it was
 * new: the reply (if the session still exists; its key-share lock keeps it from being deleted meanwhile), the
 * user message marked ok with its prompt tokens added (a regenerate adds its prompt to the send's, so Σ tokens
 * over the messages stays Σ exchange charges), the replaced reply marked superseded (a regenerate), the usage
 * event in the outbox and the user's recorded total. No NOTIFY: every notifying commit holds Postgres's one notify
 * lock through its WAL flush, so concurrent exchanges queued behind each other's fsync (the caller wakes its own
 * process's relay after the commit instead; other replicas' relays find the row at their next poll).
 * `fresh` is false when the exchange had been recorded (or settled by the sweeper) before: nothing changed; or when
 * another exchange of the same Idempotency-Key was charged: then its user message, still pending, is settled as failed.
 * `reply` is the stored reply, undefined when the session was deleted mid-exchange (the usage is charged all
 * the same; its message id then points at no stored message) or the sweeper settled the exchange first.
 */
export async function recordReply (db: Db, r: RecordedReply): Promise<{ fresh: boolean, reply?: MessageRow }> {
  const { reply, event } = r
  const { rows } = await sql<MessageRow & { fresh: boolean } | { id: null, fresh: boolean }>`
    with used as (${usageRow(event, r.idempotency)}),
    alive as (select id from sessions where id = ${reply.session_id} and exists (select 1 from used) for key share),
    reply as (
      insert into messages (id, session_id, user_id, role, content, tokens, content_tokens, status, error_code) overriding system value
      select ${reply.id}, ${reply.session_id}, ${reply.user_id}, 'assistant', ${reply.content}, ${reply.tokens}, ${reply.content_tokens}, ${reply.status}, ${reply.error_code} from alive
      returning *
    ),
    asked as (
      update messages set tokens = tokens + ${r.promptTokens}, status = 'ok', error_code = null, lease_until = null, exchange_supersedes = null
      where id = ${r.userMessageId} and exists (select 1 from alive)
    ),
    replaced as (update messages set superseded = true where id = ${r.supersedes ?? null}::bigint and exists (select 1 from alive)),
    -- Not charged and still pending: another exchange of the same Idempotency-Key was charged (a stale claim taken
    -- over while this one still ran). Settled here, so the sweeper never charges it too.
    dropped as (
      update messages set ${settledExchange('idempotency_conflict')}, lease_until = null
      where id = ${r.userMessageId} and status = 'pending' and exchange_reply_id = ${reply.id} and not exists (select 1 from used)
    ),
    ${charged(event, r.subject, r.requestId)}
    select exists (select 1 from used) as fresh, m.* from (select 1) as one
    left join (select * from reply union all select * from messages where id = ${reply.id} and not exists (select 1 from used)) m on true`.execute(db)
  const row = rows[0]
  return { fresh: row.fresh, reply: row.id !== null ? stripFresh(row as MessageRow & { fresh: boolean }) : undefined }
}

function stripFresh (row: MessageRow & { fresh: boolean }): MessageRow {
  const { fresh: _, ...rest } = row
  return rest
}

/**
 * What admission subtracts besides billing's copy: the user's recorded total, and the pending exchanges whose
 * lease expired (their process died or gave up recording; each will cost at least its prompt). One round trip.
 */
export async function readCharges (db: Db, userId: number): Promise<OwnCharges> {
  const { rows } = await sql<{ c_recorded: string | number, c_stale: OwnCharges['stale'] }>`select ${chargesColumns(userId)}`.execute(db)
  return { recorded: Number(rows[0].c_recorded), stale: rows[0].c_stale }
}

/** readCharges's two columns (`c_recorded`, `c_stale`): uncorrelated, so evaluated once per statement whatever else it returns. */
const chargesColumns = (userId: number) => sql`coalesce((select recorded from user_charges where user_id = ${userId}), 0) as c_recorded,
  coalesce((select json_agg(json_build_object('model', exchange_model, 'prompt_tokens', coalesce(exchange_prompt_tokens, content_tokens)))
    from messages where user_id = ${userId} and status = 'pending' and coalesce(lease_until, created_at) < now()), '[]') as c_stale`

export interface StaleExchange { id: number, session_id: number, user_id: number, reply_id: number, model: string | null, prompt_tokens: number }

/**
 * Settles one pending exchange whose lease expired more than `staleMs` ago (its process died), if any: locks
 * it (SKIP LOCKED: replicas sweeping at once take different ones), lets `price` build its usage event, then in
 * the same transaction records the usage (unless the exchange was recorded meanwhile), the outbox event, the
 * recorded total, and marks the message failed (`interrupted`; a regeneration's user message is ok again, with
 * the reply it had). Returns what it settled, undefined when none is left.
 */
export async function settleStaleExchange (db: Kysely<Database>, staleMs: number, price: (x: StaleExchange) => { event: UsageRecorded, subject: string }): Promise<{ exchange: StaleExchange, charged: boolean } | undefined> {
  return await db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: number, session_id: number, user_id: number, reply_id: number, model: string | null, prompt_tokens: number }>`
      select id, session_id, user_id, coalesce(exchange_reply_id, nextval(pg_get_serial_sequence('messages', 'id'))) as reply_id,
        exchange_model as model, coalesce(exchange_prompt_tokens, content_tokens) as prompt_tokens
      from messages
      where status = 'pending' and coalesce(lease_until, created_at) < now() - ${staleMs} * interval '1 millisecond'
      order by id limit 1
      for update skip locked`.execute(trx)
    if (rows.length === 0) return undefined
    const exchange = { ...rows[0], id: Number(rows[0].id), session_id: Number(rows[0].session_id), user_id: Number(rows[0].user_id), reply_id: Number(rows[0].reply_id) }
    const { event, subject } = price(exchange)
    const { rows: done } = await sql<{ charged: boolean }>`
      with used as (${usageRow(event)}),
      settled as (
        update messages set ${settledExchange('interrupted')}, lease_until = null,
          tokens = tokens + case when exists (select 1 from used) then ${event.prompt_tokens}::int else 0 end
        where id = ${exchange.id}
      ),
      ${charged(event, subject)}
      select exists (select 1 from used) as charged from (${notifyOutbox(SCHEMA)}) as woken`.execute(trx)
    return { exchange, charged: done[0].charged }
  })
}

/** Pending exchanges whose lease expired (for usage:reconcile): how many, and since when the oldest. */
export async function countStalePending (db: Db): Promise<{ count: number, oldest: Date | null }> {
  const { rows } = await sql<{ count: string | number, oldest: Date | null }>`
    select count(*) as count, min(created_at) as oldest from messages where status = 'pending' and coalesce(lease_until, created_at) < now()`.execute(db)
  return { count: Number(rows[0].count), oldest: rows[0].oldest }
}

// How a pending exchange ends without a reply: a send's user message is failed with `code`; a regeneration's is
// ok again with the reply it had (its reserved reply id, which may name a charge, is given up).
const settledExchange = (code: string) => sql`status = case when exchange_supersedes is null then 'failed' else 'ok' end,
  error_code = case when exchange_supersedes is null then ${code}::text end,
  exchange_reply_id = coalesce(exchange_supersedes, exchange_reply_id), exchange_supersedes = null`

/**
 * Marks a pending exchange that generated nothing: a send failed with `code`, a regeneration back to its reply. Only
 * this exchange's (its reserved `replyId`): if the sweeper settled it meanwhile and the user regenerated again, the
 * message is pending for that newer regeneration, which this must not undo.
 */
export async function failExchange (db: Db, userMessageId: number, replyId: number, code: string): Promise<void> {
  await sql`update messages set ${settledExchange(code)}, lease_until = null where id = ${userMessageId} and status = 'pending' and exchange_reply_id = ${replyId}`.execute(db)
}

export type RegenerateTarget = Pick<MessageRow, 'id' | 'content' | 'content_tokens'>

// The reply may be regenerated only while nothing came after it but failed user messages (the reply of a
// regeneration in progress is not written yet, and its user message no longer names this reply).
const isLastReply = (sessionId: unknown, replyId: number) => sql`exists (
      select 1 from messages r where r.id = ${replyId} and r.session_id = ${sessionId} and r.role = 'assistant' and not r.superseded)
    and not exists (select 1 from messages l where l.session_id = ${sessionId} and l.id > ${replyId} and (l.role = 'assistant' or l.status <> 'failed'))`

/**
 * The user message whose reply `replyId` is, if that reply is the session's last one (see isLastReply) and its
 * user message is settled; 'not_last' otherwise; undefined when the session is not this user's.
 */
export async function findRegenerateTarget (db: Db, sessionId: number, userId: number, replyId: number): Promise<RegenerateTarget | 'not_last' | undefined> {
  const { rows } = await sql<{ last: boolean, id: number | null, content: string | null, content_tokens: number | null }>`
    select ${isLastReply(sql`s.id`, replyId)} as last, u.id, u.content, u.content_tokens
    from sessions s
    left join messages u on u.session_id = s.id and u.id < ${replyId} and u.role = 'user' and u.status = 'ok' and u.exchange_reply_id = ${replyId}
    where s.id = ${sessionId} and s.user_id = ${userId}`.execute(db)
  if (rows.length === 0) return undefined
  const r = rows[0]
  if (!r.last || r.id === null) return 'not_last'
  return { id: Number(r.id), content: r.content!, content_tokens: r.content_tokens! }
}

/**
 * Claims the user message for a regeneration, as insertUserMessage does for a send: pending with its lease, the
 * exchange's model and prompt tokens, a new reserved reply id, and the reply it replaces. Only one regeneration
 * of a reply wins (the row's lock orders racing claims; the second finds it pending): undefined when the reply is
 * no longer the session's last one.
 */
export async function claimRegeneration (db: Db, values: { userMessageId: number, replyId: number, model: string, promptTokens: number, leaseMs: number }): Promise<(MessageRow & { reply_id: number }) | undefined> {
  const { rows } = await sql<MessageRow>`
    update messages u set status = 'pending', error_code = null, exchange_supersedes = ${values.replyId},
      exchange_reply_id = nextval(pg_get_serial_sequence('messages', 'id')),
      exchange_model = ${values.model}, exchange_prompt_tokens = ${values.promptTokens},
      lease_until = now() + ${values.leaseMs} * interval '1 millisecond'
    where u.id = ${values.userMessageId} and u.status = 'ok' and u.exchange_reply_id = ${values.replyId}
      and ${isLastReply(sql`u.session_id`, values.replyId)}
    returning *`.execute(db)
  if (rows.length === 0) return undefined
  return { ...rows[0], id: Number(rows[0].id), reply_id: Number(rows[0].exchange_reply_id) }
}
