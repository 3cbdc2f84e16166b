// Sessions: refresh-token families (the `sid` of access tokens) and their refresh tokens, stored as sha-256 hashes.
import { sql, type Migration } from 'kysely'

export const createSessionsMigration: Migration = {
  async up (db) {
    await db.schema.createTable('refresh_families')
      .addColumn('id', 'uuid', (c) => c.primaryKey())
      .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addColumn('revoked_at', 'timestamptz')
      .addColumn('revoked_reason', 'text')
      .execute()
    await db.schema.createIndex('refresh_families_user_id').on('refresh_families').column('user_id').execute()

    await db.schema.createTable('refresh_tokens')
      .addColumn('token_hash', 'bytea', (c) => c.primaryKey())
      .addColumn('family_id', 'uuid', (c) => c.notNull().references('refresh_families.id').onDelete('cascade'))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
      .addColumn('rotated_at', 'timestamptz')
      .execute()
    await db.schema.createIndex('refresh_tokens_family_id').on('refresh_tokens').column('family_id').execute()
  }
}
