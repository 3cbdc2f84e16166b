// Checks ahead of every zone: only canonical paths are routed, and /metrics wants METRICS_TOKEN when one is set.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import { ProblemError, unauthorized } from '@chat-platform/platform'
import { BAD_ESCAPE, CANONICAL, checkPath } from '../canonical-path.ts'

const notCanonical = () => new ProblemError('not_found', 'No such route: the path is not canonical (a "." or ".." segment, an empty segment, a trailing slash, an escaped ASCII character or a character outside the URL path set).')
const badEscape = () => new ProblemError('validation_failed', 'The request path has a malformed percent-encoding.', { errors: [{ path: '/path', message: 'malformed percent-encoding' }] })

/**
 * Refuses a non-canonical path before any other hook (CORS, the token check, rate limits) and before it could be
 * proxied: the route Fastify matched, and so the zone and the upstream, are those of the very path that is forwarded.
 * Added on the root instance before anything is registered, so it is the first onRequest hook of every route.
 */
export function addCanonicalPathCheck (app: FastifyInstance): void {
  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    const verdict = checkPath(request.url)
    if (verdict === CANONICAL) return done()
    done(verdict === BAD_ESCAPE ? badEscape() : notCanonical())
  })
}

const digest = (value: string) => createHash('sha256').update(value).digest()

/** The onRequest check of /metrics: `Authorization: Bearer <token>`, compared in constant time (both sides hashed). */
export function metricsTokenCheck (token: string): onRequestHookHandler {
  const expected = digest(`Bearer ${token}`)
  return function checkMetricsToken (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) {
    const given = request.headers.authorization
    if (typeof given !== 'string' || !timingSafeEqual(digest(given), expected)) return done(unauthorized('/metrics needs the metrics token (Authorization: Bearer <METRICS_TOKEN>).'))
    done()
  }
}

/** Puts the token check first on the /metrics route (and its HEAD twin) once the health plugin declares it. */
export function protectMetrics (app: FastifyInstance, token: string | undefined): void {
  if (token === undefined) return
  const check = metricsTokenCheck(token)
  app.addHook('onRoute', (route) => {
    if (route.url !== '/metrics') return
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [check, ...own]
  })
}
