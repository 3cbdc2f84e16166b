// Bearer-token verification shared by the services: EdDSA only, issuer and expiry required, verified-token cache.
import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { unauthorized } from './errors.ts'

export interface TokenClaims { sub: string, iat: number, exp: number, iss: string, jti: string, role?: 'admin' }
export interface AuthUser { id: number, role?: 'admin', jti: string }

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: TokenClaims
    user: AuthUser
  }
}
declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler: rejects the request with 401 `unauthorized` unless it carries a valid token. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

export interface JwtPluginOptions {
  publicKey: string
  /** Only auth signs tokens. */
  privateKey?: string
  issuer: string
  ttlSeconds?: number
}

export const verifyOptions = (issuer: string) => ({
  algorithms: ['EdDSA' as const],
  allowedIss: issuer,
  requiredClaims: ['exp', 'iat', 'iss', 'sub', 'jti'],
  cache: 10_000,
  cacheTTL: 600_000
})

async function jwtPlugin (app: FastifyInstance, opts: JwtPluginOptions) {
  await app.register(fastifyJwt, {
    secret: opts.privateKey ? { private: opts.privateKey, public: opts.publicKey } : { public: opts.publicKey },
    sign: { algorithm: 'EdDSA', iss: opts.issuer, expiresIn: `${opts.ttlSeconds ?? 7 * 86400}s` },
    verify: verifyOptions(opts.issuer),
    formatUser: (payload) => {
      const user: AuthUser = { id: Number(payload.sub), jti: payload.jti }
      if (payload.role === 'admin') user.role = 'admin'
      return user
    }
  })
  app.decorate('authenticate', async (request: FastifyRequest) => {
    const header = request.headers.authorization
    if (!header || !/^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(header)) throw unauthorized()
    try {
      await request.jwtVerify()
    } catch {
      throw unauthorized('The bearer token is invalid or expired.')
    }
    if (!Number.isSafeInteger(request.user.id) || request.user.id < 1) throw unauthorized('The bearer token is invalid or expired.')
  })
}

export const jwtAuthPlugin = fp(jwtPlugin, { name: 'jwt-auth', fastify: '5.x' })
