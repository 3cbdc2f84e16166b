// Email codes (password reset, email verification), the sends per address for the hourly limit, and the verified mark on users.
import { sql, type Migration } from 'kysely'

export const createEmailCodesMigration: Migration = {
  async up (db) {
    await db.schema.alterTable('users').addColumn('email_verified_at', 'timestamptz').execute()

    // One live code per user and purpose: a new code replaces the old one.
    await db.schema.createTable('email_codes')
      .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addColumn('purpose', 'text', (c) => c.notNull().check(sql`purpose in ('password_reset', 'email_verification')`))
      .addColumn('code_hash', 'bytea', (c) => c.notNull())
      .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addPrimaryKeyConstraint('email_codes_pkey', ['user_id', 'purpose'])
      .execute()

    await db.schema.createTable('email_code_sends')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('email', 'text', (c) => c.notNull())
      .addColumn('sent_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .execute()
    await db.schema.createIndex('email_code_sends_email_sent_at').on('email_code_sends').columns(['email', 'sent_at']).execute()
  }
}
