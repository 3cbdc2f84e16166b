// A session's own model and system prompt (DESIGN §6.4); null: the default model, the service's system prompt.
import { type Kysely, type Migration } from 'kysely'

export const addSessionSettingsMigration: Migration = {
  async up (db: Kysely<any>) {
    await db.schema.alterTable('sessions')
      .addColumn('model', 'text')
      .addColumn('system_prompt', 'text')
      .execute()
  }
}
