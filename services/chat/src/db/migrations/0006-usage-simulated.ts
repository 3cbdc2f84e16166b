// Whether the offline simulator answered an exchange, kept on its usage row so a rebuilt event says so too.
import { type Kysely, type Migration } from 'kysely'

export const addUsageSimulatedMigration: Migration = {
  async up (db: Kysely<any>) {
    await db.schema.alterTable('usage').addColumn('simulated', 'boolean', (c) => c.notNull().defaultTo(false)).execute()
  }
}
