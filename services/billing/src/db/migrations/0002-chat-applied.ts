// accounts.chat_applied: the sum of chat's estimated_amount over the usage events applied to the account (DESIGN §3 admission).
import { sql, type Migration } from 'kysely'

export const addChatApplied: Migration = {
  async up (db) {
    // A constant default: no table rewrite on Postgres 11+.
    await db.schema.alterTable('accounts')
      .addColumn('chat_applied', 'bigint', (c) => c.notNull().defaultTo(0).check(sql`chat_applied >= 0`))
      .execute()
  }
}
