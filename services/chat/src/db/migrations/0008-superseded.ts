// Regenerate and automatic titles (DESIGN §6.4): superseded replies, a pending regeneration's reply, and title usage rows.
import { sql, type Kysely, type Migration } from 'kysely'

export const addSupersededMigration: Migration = {
  async up (db: Kysely<any>) {
    // A reply that a regenerate replaced: still listed (superseded: true), never sent to the model again.
    // A user message being asked again keeps the reply its regeneration replaces (null otherwise): recording marks
    // that one superseded; a regeneration that fails (or is settled by the sweeper) gives the message back its reply.
    await db.schema.alterTable('messages')
      .addColumn('superseded', 'boolean', (c) => c.notNull().defaultTo(false))
      .addColumn('exchange_supersedes', 'bigint')
      .execute()
    // A title's usage row names no message; at most one title is charged per session (a second one conflicts).
    await db.schema.alterTable('usage')
      .addColumn('purpose', 'text', (c) => c.notNull().defaultTo('exchange').check(sql`purpose in ('exchange', 'title')`))
      .execute()
    await db.schema.alterTable('usage').alterColumn('message_id', (c) => c.dropNotNull()).execute()
    await db.schema.alterTable('usage').addCheckConstraint('usage_message_id_purpose', sql`(message_id is null) = (purpose = 'title')`).execute()
    await db.schema.createIndex('usage_title_session').unique().on('usage').column('session_id').where(sql.ref('purpose'), '=', 'title').execute()
  }
}
