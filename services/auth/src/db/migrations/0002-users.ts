// Users (email and/or WeChat) and their WeChat identities.
import { sql, type Migration } from 'kysely'

export const createUsersMigration: Migration = {
  async up (db) {
    await db.schema.createTable('users')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('email', 'text', (c) => c.unique().check(sql`email = lower(btrim(email))`))
      .addColumn('password_hash', 'text')
      .addColumn('nickname', 'text', (c) => c.notNull())
      .addColumn('avatar_url', 'text')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .execute()

    // openid is unique per mini-program (appid); unionid is shared by the apps of one Open Platform account.
    await db.schema.createTable('wechat_identities')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('appid', 'text', (c) => c.notNull())
      .addColumn('openid', 'text', (c) => c.notNull())
      .addColumn('unionid', 'text')
      .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addUniqueConstraint('wechat_identities_appid_openid', ['appid', 'openid'])
      .execute()
    await db.schema.createIndex('wechat_identities_unionid').on('wechat_identities').column('unionid').where(sql.ref('unionid'), 'is not', null).execute()
    await db.schema.createIndex('wechat_identities_user_id').on('wechat_identities').column('user_id').execute()
  }
}
