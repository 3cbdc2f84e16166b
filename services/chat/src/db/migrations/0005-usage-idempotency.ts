// A send's Idempotency-Key kept with its charged exchange for good, so a retry after the key's record expired replays or conflicts.
import { sql, type Kysely, type Migration } from 'kysely'

export const addUsageIdempotencyMigration: Migration = {
  async up (db: Kysely<any>) {
    // The key and the request it named (session and content, hashed as idempotency_keys.request_hash), written
    // in the recording statement: usage rows are kept forever (also when the session is deleted), unlike keys.
    await db.schema.alterTable('usage')
      .addColumn('idempotency_key', 'text')
      .addColumn('request_hash', 'text')
      .execute()
    await db.schema.createIndex('usage_idempotency_key').unique().on('usage').columns(['user_id', 'idempotency_key'])
      .where(sql.ref('idempotency_key'), 'is not', null).execute()
  }
}
