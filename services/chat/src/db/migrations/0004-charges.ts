// What chat has charged per user (admission counts it), what a pending exchange needs to be charged later, and one usage row per exchange.
import { sql, type Kysely, type Migration } from 'kysely'

export const addChargesMigration: Migration = {
  async up (db: Kysely<any>) {
    // Sum of the estimated_amount of every usage event chat recorded for the user, bumped in the recording statement.
    await db.schema.createTable('user_charges')
      .addColumn('user_id', 'bigint', (c) => c.primaryKey())
      .addColumn('recorded', 'bigint', (c) => c.notNull().defaultTo(0).check(sql`recorded >= 0`))
      .execute()
    // A pending user message keeps its exchange's reply id, model and prompt tokens (so a sweeper can charge it
    // if its process died) and a lease its process renews while the exchange runs.
    await db.schema.alterTable('messages')
      .addColumn('exchange_reply_id', 'bigint')
      .addColumn('exchange_model', 'text')
      .addColumn('exchange_prompt_tokens', 'integer')
      .addColumn('lease_until', 'timestamptz')
      .execute()
    await db.schema.createIndex('messages_pending').on('messages').column('user_id').where(sql.ref('status'), '=', 'pending').execute()
    await db.schema.alterTable('usage').addColumn('estimated_amount', 'integer').execute()
    // The reply id reserved for an exchange names it: a second record of the same exchange (a retry after a lost
    // COMMIT, or the sweeper racing a late reply) conflicts here and charges nothing.
    await db.schema.createIndex('usage_message_id').unique().on('usage').column('message_id').execute()
  }
}
