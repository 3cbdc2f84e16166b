// Sessions: a login starts a refresh-token family; refresh rotates its token; reuse, logout and logout-all revoke, and the revocation reaches every verifier through the outbox.
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Kysely } from 'kysely'
import { IAT_SKEW_SECONDS, ProblemError } from '@chat-platform/platform'
import type { Database, User } from './db/database.ts'
import { findUserById } from './db/repositories/users.ts'
import { deleteDeadRefreshTokens, insertRefreshFamily, insertRefreshToken, lockRefreshToken, markRefreshTokenRotated, revokeRefreshFamily, revokeUserRefreshFamilies } from './db/repositories/sessions.ts'
import { writeTokenRevoked } from './events/token-revoked.ts'

/** Refresh tokens live 30 days from their issue; each use replaces the token (the session itself goes on). */
export const REFRESH_TTL_SECONDS = 30 * 86400

export interface SessionContext {
  db: Kysely<Database>
  eventsNamespace: string
  /** The longest an access token lives (JWT_TTL): how long a session or user revocation must be remembered. */
  accessTtlSeconds: number
  requestId?: string
}

/** 32 random bytes, base64url: 256 bits, opaque to the client. */
const newRefreshToken = () => randomBytes(32).toString('base64url')
export const hashRefreshToken = (token: string) => createHash('sha256').update(token).digest()

/** Until when a session or user revocation matters: every access token issued up to now has expired by then. */
const revocationExp = (ctx: SessionContext) => Math.ceil(Date.now() / 1000) + ctx.accessTtlSeconds + IAT_SKEW_SECONDS

async function addRefreshToken (trx: Kysely<Database>, familyId: string): Promise<string> {
  const token = newRefreshToken()
  await insertRefreshToken(trx, { token_hash: hashRefreshToken(token), family_id: familyId, expires_at: new Date(Date.now() + REFRESH_TTL_SECONDS * 1000) })
  return token
}

/** A new session for a user who just logged in: its id (the access token's sid) and its first refresh token. */
export async function startSession (db: Kysely<Database>, userId: number): Promise<{ sid: string, refreshToken: string }> {
  return await db.transaction().execute(async (trx) => await startSessionIn(trx, userId))
}

/** `startSession` inside the caller's transaction (a password change ends every session, then starts this one). */
export async function startSessionIn (trx: Kysely<Database>, userId: number): Promise<{ sid: string, refreshToken: string }> {
  const sid = randomUUID()
  await insertRefreshFamily(trx, { id: sid, user_id: userId })
  return { sid, refreshToken: await addRefreshToken(trx, sid) }
}

const invalid = () => new ProblemError('invalid_refresh_token', 'The refresh token is invalid, expired or revoked; log in again.')

/**
 * Exchanges a refresh token for the next one of its session. A token already exchanged is reuse (a copy was
 * stolen, or the client replayed it): the whole session is revoked, its access tokens with it, and the answer
 * is 401 like for any invalid token.
 */
export async function rotateRefreshToken (ctx: SessionContext, token: string): Promise<{ user: User, sid: string, refreshToken: string }> {
  const hash = hashRefreshToken(token)
  const result = await ctx.db.transaction().execute(async (trx) => {
    const row = await lockRefreshToken(trx, hash)
    if (!row || row.revoked_at !== null) return undefined
    if (row.rotated_at !== null) {
      if (await revokeRefreshFamily(trx, row.family_id, 'reuse')) {
        await writeTokenRevoked(trx, ctx.eventsNamespace, { sid: row.family_id, exp: revocationExp(ctx) }, ctx.requestId)
      }
      return 'reuse' as const
    }
    if (row.expired || !(await markRefreshTokenRotated(trx, hash))) return undefined
    const user = await findUserById(trx, row.user_id)
    if (!user) return undefined
    return { user, sid: row.family_id, refreshToken: await addRefreshToken(trx, row.family_id) }
  })
  if (result === 'reuse') throw new ProblemError('invalid_refresh_token', 'This refresh token was already used: the session is revoked; log in again.')
  if (!result) throw invalid()
  return result
}

/**
 * Logout: this access token (its jti until its exp), its session, and the session of the refresh token given
 * (when it is the same user's) stop working.
 */
export async function endSession (ctx: SessionContext, caller: { id: number, jti: string, sid?: string, exp: number }, refreshToken?: string): Promise<void> {
  await ctx.db.transaction().execute(async (trx) => {
    const sids = new Set<string>()
    if (caller.sid) sids.add(caller.sid)
    if (refreshToken) {
      const row = await lockRefreshToken(trx, hashRefreshToken(refreshToken))
      if (row && row.user_id === caller.id) sids.add(row.family_id)
    }
    await writeTokenRevoked(trx, ctx.eventsNamespace, { jti: caller.jti, exp: caller.exp }, ctx.requestId)
    for (const sid of sids) {
      if (await revokeRefreshFamily(trx, sid, 'logout')) await writeTokenRevoked(trx, ctx.eventsNamespace, { sid, exp: revocationExp(ctx) }, ctx.requestId)
    }
  })
}

/**
 * Every session of the user ends, and every access token issued before this second (those without a session
 * included). Runs in the caller's transaction (password change and reset, deletion use it with their own change).
 */
export async function endAllSessions (trx: Kysely<Database>, ctx: SessionContext, userId: number, reason: string, opts: { jti?: string, exp?: number, everything?: boolean } = {}): Promise<void> {
  const exp = revocationExp(ctx)
  for (const sid of await revokeUserRefreshFamilies(trx, userId, reason)) {
    await writeTokenRevoked(trx, ctx.eventsNamespace, { sid, exp }, ctx.requestId)
  }
  // A token carries iat in whole seconds: "before this second" spares a session started in the same second
  // right after (a fresh pair after a password change). `everything` (deletion) also takes this second.
  const nowS = Math.floor(Date.now() / 1000)
  const event = { user_id: userId, not_before: opts.everything ? nowS + 1 : nowS, exp }
  await writeTokenRevoked(trx, ctx.eventsNamespace, opts.jti ? { ...event, jti: opts.jti } : event, ctx.requestId)
  await deleteDeadRefreshTokens(trx, userId)
}
