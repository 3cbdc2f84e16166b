// Redemption codes (batches and their hashed codes), the ledger kind `redemption`, adjustments' admin and reason, usage-report indexes.
import { sql, type Migration } from 'kysely'

export const createRedemptionCodes: Migration = {
  async up (db) {
    await db.schema.createTable('redemption_batches')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('admin_id', 'bigint', (c) => c.notNull())
      .addColumn('tokens', 'bigint', (c) => c.notNull().check(sql`tokens > 0`))
      .addColumn('count', 'integer', (c) => c.notNull().check(sql`count > 0`))
      .addColumn('expires_at', 'timestamptz')
      .addColumn('note', 'text')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .execute()

    // Only the sha-256 of a code is kept: the codes in clear were shown once, to the admin who made them.
    await db.schema.createTable('redemption_codes')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('batch_id', 'bigint', (c) => c.notNull().references('redemption_batches.id'))
      .addColumn('code_hash', 'bytea', (c) => c.notNull().unique())
      .addColumn('used_by', 'bigint')
      .addColumn('used_at', 'timestamptz')
      .addCheckConstraint('redemption_codes_used', sql`(used_by is null) = (used_at is null)`)
      .execute()
    await db.schema.createIndex('redemption_codes_batch_id').on('redemption_codes').column('batch_id').execute()

    // The ledger gets the kind `redemption` (a credit; source_id = the code's id). The kind `payment` (0003) is
    // restated, so the constraints are right whichever of the two migrations a database saw last.
    await sql`alter table transactions drop constraint if exists transactions_kind_check`.execute(db)
    await sql`alter table transactions add constraint transactions_kind_check check (kind in ('signup_bonus', 'recharge', 'usage', 'adjustment', 'payment', 'redemption'))`.execute(db)
    await sql`alter table transactions drop constraint if exists transactions_sign`.execute(db)
    await sql`alter table transactions add constraint transactions_sign check ((kind in ('signup_bonus', 'recharge', 'payment', 'redemption') and change_amount > 0) or (kind = 'usage' and change_amount < 0) or kind = 'adjustment')`.execute(db)

    // An adjustment names the admin who made it and why (nullable columns: no table rewrite; NOT VALID: old rows unchecked).
    await db.schema.alterTable('transactions').addColumn('admin_id', 'bigint').addColumn('reason', 'text').execute()
    await sql`alter table transactions add constraint transactions_adjustment_provenance check (kind <> 'adjustment' or (admin_id is not null and reason is not null)) not valid`.execute(db)

    // A usage row says what the model call was for (the event's purpose): an exchange, or a session's automatic title
    // (DESIGN §6.4). Null on other kinds; usage rows written before this are exchanges.
    await sql`alter table transactions add column purpose text check (purpose in ('exchange', 'title'))`.execute(db)

    // The usage report reads only usage rows, by user and time (GET /api/billing/usage) or by time (GET /api/admin/usage);
    // the included columns let both be index-only scans.
    await sql`create index transactions_usage_user_created on transactions (user_id, created_at) include (model, prompt_tokens, completion_tokens, change_amount, purpose) where kind = 'usage'`.execute(db)
    await sql`create index transactions_usage_created on transactions (created_at) include (model, prompt_tokens, completion_tokens, change_amount, purpose) where kind = 'usage'`.execute(db)
  }
}
