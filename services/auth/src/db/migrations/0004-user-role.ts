// A role stored on the user ('user' or 'admin'), changed only by the operator commands admin:grant / admin:revoke.
import { sql, type Migration } from 'kysely'

export const addUserRoleMigration: Migration = {
  async up (db) {
    await db.schema.alterTable('users')
      .addColumn('role', 'text', (c) => c.notNull().defaultTo('user').check(sql`role in ('user', 'admin')`))
      .execute()
  }
}
