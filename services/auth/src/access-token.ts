// Issues access tokens: EdDSA JWT with sub, iat, exp, iss, jti, sid (the session), and role "admin" for a user holding the stored role.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { TokenClaims } from '@chat-platform/platform'
import type { Database, User } from './db/database.ts'
import { startSession } from './sessions.ts'

export interface TokenLifetimes { ttlSeconds: number, adminTtlSeconds: number }
export interface AccessToken { access_token: string, token_type: 'bearer', expires_in: number }
export interface TokenPair extends AccessToken { refresh_token: string }

/**
 * The role is read from the user row the caller just loaded, so a token carries "admin" only if the user
 * held the role when it was issued; such a token lives at most `adminTtlSeconds`.
 */
export function issueAccessToken (app: FastifyInstance, user: Pick<User, 'id' | 'role'>, lifetimes: TokenLifetimes, sid: string): AccessToken {
  const claims: Partial<TokenClaims> = { sub: String(user.id), jti: randomUUID(), sid }
  let ttl = lifetimes.ttlSeconds
  if (user.role === 'admin') {
    claims.role = 'admin'
    ttl = Math.min(ttl, lifetimes.adminTtlSeconds)
  }
  // iat and iss are added by the signer (jwtAuthPlugin's sign options); exp from the lifetime chosen here.
  return { access_token: app.jwt.sign(claims as TokenClaims, { expiresIn: `${ttl}s` }), token_type: 'bearer', expires_in: ttl }
}

/** A login: a new session, its first refresh token and an access token bound to it. */
export async function issueTokenPair (app: FastifyInstance, db: Kysely<Database>, user: Pick<User, 'id' | 'role'>, lifetimes: TokenLifetimes): Promise<TokenPair> {
  const { sid, refreshToken } = await startSession(db, user.id)
  return { ...issueAccessToken(app, user, lifetimes, sid), refresh_token: refreshToken }
}
