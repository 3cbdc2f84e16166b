// Queries on `wechat_identities`.
import { sql, type Kysely } from 'kysely'
import type { Database, NewWechatIdentity, WechatIdentity } from '../database.ts'

type Db = Kysely<Database>

export async function findWechatIdentity (db: Db, appid: string, openid: string): Promise<WechatIdentity | undefined> {
  return await db.selectFrom('wechat_identities').selectAll().where('appid', '=', appid).where('openid', '=', openid).executeTakeFirst()
}

/** Any identity carrying this unionid (the same person in another app of the Open Platform account). */
export async function findWechatIdentityByUnionid (db: Db, unionid: string): Promise<WechatIdentity | undefined> {
  return await db.selectFrom('wechat_identities').selectAll().where('unionid', '=', unionid).orderBy('id').limit(1).executeTakeFirst()
}

export async function insertWechatIdentity (db: Db, identity: NewWechatIdentity): Promise<void> {
  await db.insertInto('wechat_identities').values(identity).execute()
}

export async function setWechatUnionid (db: Db, id: number, unionid: string): Promise<void> {
  await db.updateTable('wechat_identities').set({ unionid }).where('id', '=', id).execute()
}

/** Serializes first logins of the same WeChat user (same openid or unionid) until the transaction ends. */
export async function lockWechatKey (db: Db, key: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext(${'auth:wechat:' + key}))`.execute(db)
}

/** The user's openid in the app `appid` (the oldest, should a user hold two there), or undefined. */
export async function findOpenidOfUser (db: Db, userId: number, appid: string): Promise<string | undefined> {
  const row = await db.selectFrom('wechat_identities').select('openid').where('user_id', '=', userId).where('appid', '=', appid).orderBy('id').limit(1).executeTakeFirst()
  return row?.openid
}
