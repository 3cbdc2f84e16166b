// Queries on processed_events: the record that an event was applied (claimed in the applying transaction).
import { sql, type Kysely } from 'kysely'
import type { Database } from '../database.ts'

type Db = Kysely<Database>

export interface EventClaim { event_id: string, subject: string, user_id: number, occurred_at: string, amount: number | null }

/**
 * Records events as applied; returns the ids that were not recorded before (the ones to apply now). Claims go
 * in event_id order, so two transactions claiming the same ids wait for each other instead of deadlocking.
 */
export async function claimEvents (db: Db, claims: EventClaim[]): Promise<Set<string>> {
  if (claims.length === 0) return new Set()
  const events = [...claims].sort((a, b) => (a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0))
  const { rows } = await sql<{ event_id: string }>`
    insert into processed_events (event_id, subject, user_id, occurred_at, amount)
    select * from unnest(${events.map((e) => e.event_id)}::uuid[], ${events.map((e) => e.subject)}::text[],
      ${events.map((e) => e.user_id)}::bigint[], ${events.map((e) => e.occurred_at)}::timestamptz[], ${events.map((e) => e.amount)}::bigint[])
    on conflict (event_id) do nothing
    returning event_id`.execute(db)
  return new Set(rows.map((r) => r.event_id))
}

export async function listProcessedEventIds (db: Db, subject: string, since: Date, until?: Date): Promise<string[]> {
  const rows = await db.selectFrom('processed_events').select('event_id')
    .where('subject', '=', subject)
    .where('occurred_at', '>=', since)
    .$if(until !== undefined, (q) => q.where('occurred_at', '<', until!))
    .orderBy('occurred_at')
    .execute()
  return rows.map((r) => r.event_id)
}

export async function selectProcessedEventIds (db: Db, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set()
  const rows = await db.selectFrom('processed_events').select('event_id').where('event_id', '=', sql<string>`any(${ids}::uuid[])`).execute()
  return new Set(rows.map((r) => r.event_id))
}
