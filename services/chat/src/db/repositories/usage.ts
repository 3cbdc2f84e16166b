// Usage records of charged exchanges (the source of truth for usage:reconcile).
import type { Kysely, Transaction } from 'kysely'
import type { Database, NewUsage, UsageTable } from '../database.ts'
import type { Selectable } from 'kysely'

type Db = Kysely<Database> | Transaction<Database>

export async function insertUsage (db: Db, values: NewUsage): Promise<void> {
  await db.insertInto('usage').values(values).execute()
}

/** Usage recorded in [since, until), oldest first. */
export async function listUsageBetween (db: Db, since: Date, until?: Date): Promise<{ event_id: string, occurred_at: Date }[]> {
  return await db.selectFrom('usage').select(['event_id', 'occurred_at'])
    .where('occurred_at', '>=', since)
    .$if(until !== undefined, (q) => q.where('occurred_at', '<', until!))
    .orderBy('occurred_at').orderBy('event_id')
    .execute()
}

export async function findUsageByIds (db: Db, ids: string[]): Promise<Selectable<UsageTable>[]> {
  if (ids.length === 0) return []
  return await db.selectFrom('usage').selectAll().where('event_id', 'in', ids).execute()
}
