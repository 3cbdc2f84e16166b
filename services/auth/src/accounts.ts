// Account rules that are neither HTTP nor SQL: registration by email, find-or-create by WeChat identity.
import { sql, type Kysely } from 'kysely'
import { ProblemError } from '@chat-platform/platform'
import type { Database, User } from './db/database.ts'
import { findUserById, insertUser } from './db/repositories/users.ts'
import { findWechatIdentity, findWechatIdentityByUnionid, insertWechatIdentity, lockWechatKey, setWechatUnionid } from './db/repositories/wechat-identities.ts'
import { writeUserRegistered } from './events/user-registered.ts'
import type { WechatSession } from './wechat.ts'

export const WECHAT_DEFAULT_NICKNAME = '微信用户'

export interface Outbox { eventsNamespace: string, requestId?: string }

/**
 * Creates the user and, unless the event waits for the address to be verified (SIGNUP_BONUS_ON=verified_email),
 * its `auth.user.registered` event, in one transaction; a taken email is 409.
 */
export async function registerWithEmail (db: Kysely<Database>, input: { email: string, passwordHash: string, nickname: string }, outbox: Outbox & { publishRegistered?: boolean }): Promise<User> {
  return await db.transaction().execute(async (trx) => {
    const user = await insertUser(trx, { email: input.email, password_hash: input.passwordHash, nickname: input.nickname })
    if (!user) throw new ProblemError('email_taken', 'An account with this email already exists.')
    if (outbox.publishRegistered !== false) await writeUserRegistered(trx, outbox.eventsNamespace, { user_id: user.id, via: 'email' }, outbox.requestId)
    return user
  })
}

/**
 * Marks the user's address verified, in the caller's transaction. The first time, under
 * SIGNUP_BONUS_ON=verified_email, this is when `auth.user.registered` is published (billing's bonus; billing
 * grants it at most once per user, so an account registered before the setting changed gets no second one).
 */
export async function markEmailVerified (trx: Kysely<Database>, userId: number, signupBonusOn: 'register' | 'verified_email', outbox: Outbox): Promise<void> {
  const r = await trx.updateTable('users').set({ email_verified_at: sql<Date>`now()` })
    .where('id', '=', userId).where('email_verified_at', 'is', null).executeTakeFirst()
  if (r.numUpdatedRows === 1n && signupBonusOn === 'verified_email') {
    await writeUserRegistered(trx, outbox.eventsNamespace, { user_id: userId, via: 'email' }, outbox.requestId)
  }
}

/**
 * The user behind a WeChat identity: known by (appid, openid); else, with a unionid, the user another app
 * of the same Open Platform account already knows (linked, no new account); else a new user, registered
 * with its event. Concurrent first logins of the same person are serialized by advisory locks.
 */
export async function findOrCreateWechatUser (db: Kysely<Database>, appid: string, session: WechatSession, outbox: Outbox): Promise<{ user: User, created: boolean }> {
  return await db.transaction().execute(async (trx) => {
    // Always openid first, then unionid: a fixed order cannot deadlock.
    await lockWechatKey(trx, `openid:${appid}:${session.openid}`)
    if (session.unionid) await lockWechatKey(trx, `unionid:${session.unionid}`)

    const known = await findWechatIdentity(trx, appid, session.openid)
    if (known) {
      if (session.unionid && known.unionid !== session.unionid) await setWechatUnionid(trx, known.id, session.unionid)
      const user = await findUserById(trx, known.user_id)
      if (!user) throw new Error(`wechat identity ${known.id} points to a missing user`)
      return { user, created: false }
    }

    const sibling = session.unionid ? await findWechatIdentityByUnionid(trx, session.unionid) : undefined
    const linked = sibling ? await findUserById(trx, sibling.user_id) : undefined
    if (linked) {
      await insertWechatIdentity(trx, { appid, openid: session.openid, unionid: session.unionid ?? null, user_id: linked.id })
      return { user: linked, created: false }
    }

    const user = await insertUser(trx, { email: null, password_hash: null, nickname: WECHAT_DEFAULT_NICKNAME })
    if (!user) throw new Error('inserting a user without email conflicted')
    await insertWechatIdentity(trx, { appid, openid: session.openid, unionid: session.unionid ?? null, user_id: user.id })
    await writeUserRegistered(trx, outbox.eventsNamespace, { user_id: user.id, via: 'wechat' }, outbox.requestId)
    return { user, created: true }
  })
}
