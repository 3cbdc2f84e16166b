// The trust boundary inside: routes under /internal/ answer only calls carrying INTERNAL_TOKEN (constant-time compare).
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import { INTERNAL_PATH_PREFIX, INTERNAL_TOKEN_HEADER } from '@chat-platform/contracts'
import { ProblemError } from './errors.ts'

const digest = (value: string) => createHash('sha256').update(value).digest()

/** True when `given` is the token. Both sides are hashed first, so the compare is constant-time whatever their lengths. */
export function internalTokenMatches (given: string | undefined, token: string): boolean {
  return given !== undefined && timingSafeEqual(digest(given), digest(token))
}

/** The onRequest check of one internal route: 401 without the header, 403 with a wrong one. */
export function internalTokenCheck (token: string): onRequestHookHandler {
  const expected = digest(token)
  return function checkInternalToken (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) {
    const given = request.headers[INTERNAL_TOKEN_HEADER]
    if (typeof given !== 'string' || given === '') {
      return done(new ProblemError('unauthorized', `Internal routes need the internal token (${INTERNAL_TOKEN_HEADER}).`))
    }
    if (!timingSafeEqual(digest(given), expected)) return done(new ProblemError('forbidden', 'The internal token is wrong.'))
    done()
  }
}

/**
 * Adds the token check to every route under /internal/ declared on `app` from now on (its own routes and its
 * plugins'), ahead of the route's own hooks. Without a token (development, tests) the routes stay open.
 * Call it before any route is declared: createHttpApp does.
 */
export function protectInternalRoutes (app: FastifyInstance, token: string | undefined): void {
  if (token === undefined) return
  const check = internalTokenCheck(token)
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(INTERNAL_PATH_PREFIX)) return
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [check, ...own]
  })
}

/** An /internal/ route as an app declared it: method, url and the schema object it gave. */
export interface DeclaredInternalRoute { method: string, url: string, schema: Record<string, unknown> | undefined }

const declared = new WeakMap<FastifyInstance, DeclaredInternalRoute[]>()

/**
 * Keeps the /internal/ routes `app` declares from now on (its plugins' included), for the contract tests
 * (packages/platform/src/testing/contracts.ts) to compare with contracts' InternalEndpoints.
 */
export function recordInternalRoutes (app: FastifyInstance): void {
  const routes: DeclaredInternalRoute[] = []
  declared.set(app, routes)
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(INTERNAL_PATH_PREFIX)) return
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, schema: route.schema as Record<string, unknown> | undefined })
  })
}

/** The /internal/ routes `app` declared since recordInternalRoutes (createHttpApp calls it for every service). */
export function declaredInternalRoutes (app: FastifyInstance): DeclaredInternalRoute[] {
  return [...(declared.get(app) ?? [])]
}
