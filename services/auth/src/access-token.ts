// Issues access tokens: EdDSA JWT with sub, iat, exp, iss, jti, and role "admin" for ADMIN_EMAILS.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TokenClaims } from '@chat-platform/platform'
import type { User } from './db/database.ts'

export function issueAccessToken (app: FastifyInstance, user: Pick<User, 'id' | 'email'>, admins: Set<string>): { access_token: string, token_type: 'bearer' } {
  const claims: Partial<TokenClaims> = { sub: String(user.id), jti: randomUUID() }
  if (user.email && admins.has(user.email)) claims.role = 'admin'
  // iat, exp and iss are added by the signer (jwtAuthPlugin's sign options).
  return { access_token: app.jwt.sign(claims as TokenClaims), token_type: 'bearer' }
}
