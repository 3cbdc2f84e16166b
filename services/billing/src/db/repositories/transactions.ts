// Queries on the ledger (transactions): append rows in order, list a user's rows newest first.
import { sql, type Kysely } from 'kysely'
import type { Database, NewLedgerRow } from '../database.ts'

type Db = Kysely<Database>

/** Appends rows; ids are assigned in array order, which is the order balances were applied in. */
export async function insertTransactions (db: Db, rows: NewLedgerRow[]): Promise<void> {
  if (rows.length === 0) return
  const col = <K extends keyof NewLedgerRow>(k: K) => rows.map((r) => r[k] ?? null)
  await sql`
    insert into transactions (user_id, change_amount, balance_after, kind, description, source_id, event_id,
      model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source, purpose, admin_id, reason)
    select user_id, change_amount, balance_after, kind, description, source_id, event_id,
      model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source, purpose, admin_id, reason
    from unnest(${col('user_id')}::bigint[], ${col('change_amount')}::bigint[], ${col('balance_after')}::bigint[],
      ${col('kind')}::text[], ${col('description')}::text[], ${col('source_id')}::text[], ${col('event_id')}::uuid[],
      ${col('model')}::text[], ${col('prompt_tokens')}::integer[], ${col('completion_tokens')}::integer[],
      ${col('input_ratio')}::numeric[], ${col('output_ratio')}::numeric[], ${col('usage_source')}::text[], ${col('purpose')}::text[],
      ${col('admin_id')}::bigint[], ${col('reason')}::text[])
      with ordinality as r(user_id, change_amount, balance_after, kind, description, source_id, event_id,
        model, prompt_tokens, completion_tokens, input_ratio, output_ratio, usage_source, purpose, admin_id, reason, ord)
    order by ord`.execute(db)
}

export async function listTransactions (db: Db, userId: number, opts: { limit: number, beforeId?: number }) {
  return await db.selectFrom('transactions')
    .select(['id', 'user_id', 'change_amount', 'balance_after', 'description', 'created_at'])
    .where('user_id', '=', userId)
    .$if(opts.beforeId !== undefined, (q) => q.where('id', '<', opts.beforeId!))
    .orderBy('id', 'desc')
    .limit(opts.limit)
    .execute()
}

/** The ledger row a source wrote (unique per kind), e.g. the recharge of an Idempotency-Key. */
export async function selectTransactionBySource (db: Db, kind: NewLedgerRow['kind'], sourceId: string) {
  return await db.selectFrom('transactions').select(['user_id', 'change_amount', 'balance_after'])
    .where('kind', '=', kind).where('source_id', '=', sourceId).executeTakeFirst()
}

/** A user's rows as an admin sees them (kind, source and provenance included), newest first. */
export async function listAdminTransactions (db: Db, userId: number, opts: { limit: number, beforeId?: number }) {
  return await db.selectFrom('transactions')
    .select(['id', 'user_id', 'change_amount', 'balance_after', 'description', 'created_at', 'kind', 'source_id', 'model', 'prompt_tokens', 'completion_tokens', 'usage_source', 'admin_id', 'reason'])
    .where('user_id', '=', userId)
    .$if(opts.beforeId !== undefined, (q) => q.where('id', '<', opts.beforeId!))
    .orderBy('id', 'desc')
    .limit(opts.limit)
    .execute()
}

/** The row a source wrote, as an admin sees it. */
export async function selectAdminTransactionBySource (db: Db, kind: NewLedgerRow['kind'], sourceId: string) {
  return await db.selectFrom('transactions')
    .select(['id', 'user_id', 'change_amount', 'balance_after', 'description', 'created_at', 'kind', 'source_id', 'model', 'prompt_tokens', 'completion_tokens', 'usage_source', 'admin_id', 'reason'])
    .where('kind', '=', kind).where('source_id', '=', sourceId).executeTakeFirst()
}
