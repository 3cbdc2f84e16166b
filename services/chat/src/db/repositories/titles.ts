// The query of an automatic session title: its charge and the title, in one statement.
import { sql, type Kysely, type Transaction } from 'kysely'
import type { UsageRecorded } from '@chat-platform/contracts'
import type { Database } from '../database.ts'
import { charged, usageRow } from './exchanges.ts'

type Db = Kysely<Database> | Transaction<Database>

/** Whether the session (any user's) still has `untitled` as its title and no title charged yet. */
export async function needsTitle (db: Db, sessionId: number, untitled: string): Promise<boolean> {
  const { rows } = await sql<{ needed: boolean }>`
    select exists (select 1 from sessions s where s.id = ${sessionId} and s.title = ${untitled}
      and not exists (select 1 from usage u where u.session_id = s.id and u.purpose = 'title')) as needed`.execute(db)
  return rows[0].needed
}

/**
 * Records a generated title (the event's `purpose` is title, its message_id null): the usage row (unique per
 * session: a second title of the same session charges nothing), the outbox event and the user's recorded total,
 * and, only if the charge was new, the title (null: the answer held none), unless the session was renamed (or
 * deleted) meanwhile: the charge stands either way (the model was asked and answered).
 */
export async function recordTitle (db: Db, r: { event: UsageRecorded, subject: string, title: string | null, untitled: string, requestId?: string }): Promise<{ charged: boolean, titled: boolean }> {
  const { rows } = await sql<{ charged: boolean, titled: boolean }>`
    with used as (${usageRow(r.event)}),
    ${charged(r.event, r.subject, r.requestId)},
    titled as (
      update sessions set title = ${r.title}::text where id = ${r.event.session_id} and title = ${r.untitled} and ${r.title}::text is not null
        and exists (select 1 from used)
      returning id
    )
    select exists (select 1 from used) as charged, exists (select 1 from titled) as titled`.execute(db)
  return rows[0]
}
