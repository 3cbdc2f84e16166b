// Sessions, messages, usage records and idempotency keys of the chat service.
import { sql, type Kysely, type Migration } from 'kysely'

export const createChatTablesMigration: Migration = {
  async up (db: Kysely<any>) {
    await db.schema.createTable('sessions')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('user_id', 'bigint', (c) => c.notNull())
      .addColumn('title', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .execute()
    await db.schema.createIndex('sessions_user_id').on('sessions').columns(['user_id', 'id']).execute()

    await db.schema.createTable('messages')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('session_id', 'bigint', (c) => c.notNull().references('sessions.id').onDelete('cascade'))
      .addColumn('user_id', 'bigint', (c) => c.notNull())
      .addColumn('role', 'text', (c) => c.notNull().check(sql`role in ('user', 'assistant')`))
      .addColumn('content', 'text', (c) => c.notNull())
      .addColumn('tokens', 'integer', (c) => c.notNull().defaultTo(0).check(sql`tokens >= 0`))
      .addColumn('content_tokens', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('pending', 'ok', 'failed', 'partial')`))
      .addColumn('error_code', 'text')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .execute()
    await db.schema.createIndex('messages_session_id').on('messages').columns(['session_id', 'id']).execute()

    await db.schema.createTable('usage')
      .addColumn('event_id', 'uuid', (c) => c.primaryKey())
      .addColumn('user_id', 'bigint', (c) => c.notNull())
      .addColumn('session_id', 'bigint', (c) => c.notNull())
      .addColumn('message_id', 'bigint', (c) => c.notNull())
      .addColumn('model', 'text', (c) => c.notNull())
      .addColumn('prompt_tokens', 'integer', (c) => c.notNull().check(sql`prompt_tokens >= 0`))
      .addColumn('completion_tokens', 'integer', (c) => c.notNull().check(sql`completion_tokens >= 0`))
      .addColumn('usage_source', 'text', (c) => c.notNull().check(sql`usage_source in ('provider', 'estimated')`))
      .addColumn('occurred_at', 'timestamptz', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('usage_occurred_at').on('usage').column('occurred_at').execute()
    await db.schema.createIndex('usage_user_id').on('usage').columns(['user_id', 'occurred_at']).execute()

    await db.schema.createTable('idempotency_keys')
      .addColumn('user_id', 'bigint', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('request_hash', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('in_progress', 'done')`))
      .addColumn('response', 'jsonb')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addColumn('locked_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addPrimaryKeyConstraint('idempotency_keys_pkey', ['user_id', 'key'])
      .execute()
    await db.schema.createIndex('idempotency_keys_created_at').on('idempotency_keys').column('created_at').execute()
  }
}
