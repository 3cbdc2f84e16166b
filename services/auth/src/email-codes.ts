// Email codes: 6 digits, 10 minutes, 5 tries, one live code per user and purpose, at most 5 code mails per address per hour.
import { createHash, randomInt, timingSafeEqual } from 'node:crypto'
import { sql, type Kysely } from 'kysely'
import type { Database, EmailCodePurpose } from './db/database.ts'
import type { Mail } from './mail.ts'

export const CODE_TTL_SECONDS = 600
export const CODE_MAX_ATTEMPTS = 5
export const CODE_MAILS_PER_HOUR = 5

const hashCode = (userId: number, purpose: EmailCodePurpose, code: string) => createHash('sha256').update(`${userId}:${purpose}:${code}`).digest()
export const newCode = () => String(randomInt(0, 1_000_000)).padStart(6, '0')

export type IssueResult = { sent: true, code?: string } | { sent: false, retryAfterSeconds: number }

/**
 * Counts a code mail to `email` against its hourly limit and, for a user, makes a new code (replacing the live
 * one). Unknown addresses are counted too, so a reset request costs the same work whether or not the address
 * is registered. Concurrent requests for one address are serialized by an advisory lock.
 */
export async function issueCode (db: Kysely<Database>, email: string, user: { id: number, purpose: EmailCodePurpose } | undefined): Promise<IssueResult> {
  return await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext(${`email-code:${email}`}))`.execute(trx)
    const recent = await trx.selectFrom('email_code_sends')
      .select([sql<number>`count(*)::int`.as('n'), sql<Date | null>`min(sent_at)`.as('oldest')])
      .where('email', '=', email)
      .where('sent_at', '>', sql<Date>`now() - interval '1 hour'`)
      .executeTakeFirstOrThrow()
    if (recent.n >= CODE_MAILS_PER_HOUR) {
      const until = (recent.oldest?.getTime() ?? Date.now()) + 3600_000
      return { sent: false, retryAfterSeconds: Math.max(1, Math.ceil((until - Date.now()) / 1000)) }
    }
    await trx.insertInto('email_code_sends').values({ email }).execute()
    if (!user) return { sent: true }
    const code = newCode()
    const row = { code_hash: hashCode(user.id, user.purpose, code), expires_at: new Date(Date.now() + CODE_TTL_SECONDS * 1000), attempts: 0 }
    await trx.insertInto('email_codes').values({ user_id: user.id, purpose: user.purpose, ...row })
      .onConflict((oc) => oc.columns(['user_id', 'purpose']).doUpdateSet({ ...row, created_at: sql<Date>`now()` } as never))
      .execute()
    return { sent: true, code }
  })
}

/**
 * Checks a code inside the caller's transaction. Right: the code is deleted (single use) and true returned, and
 * the caller applies its change in the same transaction. Wrong: its try is counted (committed by the caller,
 * who must not roll back on false); after CODE_MAX_ATTEMPTS tries, or past its 10 minutes, no code matches.
 */
export async function consumeCode (trx: Kysely<Database>, userId: number, purpose: EmailCodePurpose, code: string): Promise<boolean> {
  const row = await trx.selectFrom('email_codes').selectAll()
    .select(sql<boolean>`expires_at <= now()`.as('expired'))
    .where('user_id', '=', userId).where('purpose', '=', purpose)
    .forUpdate().executeTakeFirst()
  if (!row || row.expired || row.attempts >= CODE_MAX_ATTEMPTS) return false
  if (!timingSafeEqual(hashCode(userId, purpose, code), row.code_hash)) {
    await trx.updateTable('email_codes').set({ attempts: row.attempts + 1 }).where('user_id', '=', userId).where('purpose', '=', purpose).execute()
    return false
  }
  await trx.deleteFrom('email_codes').where('user_id', '=', userId).where('purpose', '=', purpose).execute()
  return true
}

export function codeMail (to: string, purpose: EmailCodePurpose, code: string): Mail {
  const what = purpose === 'password_reset' ? '重置密码 / password reset' : '验证邮箱 / email verification'
  return {
    to,
    subject: `chat-platform ${purpose === 'password_reset' ? '重置密码验证码 / password reset code' : '邮箱验证码 / email verification code'}`,
    text: `您的验证码（${what}）是 ${code}，10 分钟内有效。如非本人操作，请忽略本邮件。\n\nYour code (${what}) is ${code}. It is valid for 10 minutes. If you did not ask for it, ignore this mail.\n`
  }
}
