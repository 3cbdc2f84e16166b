// Issues access tokens: EdDSA JWT with sub, iat, exp, iss, jti, and role "admin" for a user holding the stored role.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TokenClaims } from '@chat-platform/platform'
import type { User } from './db/database.ts'

export interface TokenLifetimes { ttlSeconds: number, adminTtlSeconds: number }

/**
 * The role is read from the user row the caller just loaded, so a token carries "admin" only if the user
 * held the role when it was issued; such a token lives at most `adminTtlSeconds`, which bounds how long a
 * revoked admin keeps the power (there is no revocation list).
 */
export function issueAccessToken (app: FastifyInstance, user: Pick<User, 'id' | 'role'>, lifetimes: TokenLifetimes): { access_token: string, token_type: 'bearer' } {
  const claims: Partial<TokenClaims> = { sub: String(user.id), jti: randomUUID() }
  let ttl = lifetimes.ttlSeconds
  if (user.role === 'admin') {
    claims.role = 'admin'
    ttl = Math.min(ttl, lifetimes.adminTtlSeconds)
  }
  // iat and iss are added by the signer (jwtAuthPlugin's sign options); exp from the lifetime chosen here.
  return { access_token: app.jwt.sign(claims as TokenClaims, { expiresIn: `${ttl}s` }), token_type: 'bearer' }
}
