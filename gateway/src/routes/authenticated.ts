// Authenticated trust zone: every other /api route; the JWT is verified here, then the request is rate limited per user and proxied.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { sendProblem } from '@chat-platform/platform'
import { ADMIN_MOUNTS, AUTHENTICATED_MOUNTS } from '../routing.ts'
import { clientIp, registerRateLimit } from '../plugins/rate-limit.ts'
import { proxyMount } from './proxy.ts'
import type { ZoneOptions } from './public.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Why the bearer token was refused; thrown after the rate limit has counted the request. */
    authFailure: Error | null
  }
}

export default async function authenticatedRoutes (app: FastifyInstance, opts: ZoneOptions) {
  app.decorateRequest('authFailure', null)
  // Verify first, refuse later: a flood of bad tokens is still rate limited (per IP), and never parsed or proxied.
  // Callback-style hooks: the check is synchronous (verified tokens are cached), so no promise per request.
  app.addHook('onRequest', (request, _reply, done) => {
    try {
      app.verifyBearer(request)
    } catch (err) {
      request.authFailure = err as Error
    }
    done()
  })
  app.addHook('preParsing', (request, _reply, payload, done) => { done(request.authFailure, payload) })
  const byUser = (request: FastifyRequest) => request.authFailure || !request.user ? clientIp(request) : `user:${request.user.id}`
  await registerRateLimit(app, { zone: 'api', redis: opts.redis, nameSpace: 'gw:rl:', keyGenerator: byUser, ...opts.rateLimit })
  for (const mount of AUTHENTICATED_MOUNTS) {
    await app.register(proxyMount, { mount, upstream: opts.upstreams[mount.upstream], timeouts: opts.timeouts })
  }
  await app.register(adminRoutes, opts)
}

/**
 * /api/admin/*: the zone's token check and rate limit (inherited), then the role: a valid token without role "admin"
 * is 403 here and never proxied (the owning service checks the role again).
 */
async function adminRoutes (app: FastifyInstance, opts: ZoneOptions) {
  app.addHook('onRequest', (request, reply, done) => {
    // A refused token is answered 401 by the zone's preParsing hook; only a valid non-admin token is 403.
    if (request.authFailure || request.user?.role === 'admin') return done()
    sendProblem(reply, 'forbidden', 'This route needs an administrator.')
  })
  for (const mount of ADMIN_MOUNTS) {
    await app.register(proxyMount, { mount, upstream: opts.upstreams[mount.upstream], timeouts: opts.timeouts })
  }
}
