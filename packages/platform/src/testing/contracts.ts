// Contract test of a service's internal routes: every /internal/ route it declares is one of contracts'
// InternalEndpoints of that service, with the contract's very schema objects; every endpoint it serves is declared.
import { InternalEndpoints, type InternalEndpoint } from '@chat-platform/contracts'
import type { FastifyInstance } from 'fastify'
import { declaredInternalRoutes } from '../internal-auth.ts'

/** tap's `t` (or anything with these three checks). */
type Check = (...args: any[]) => unknown
interface Asserts { ok: Check, equal: Check, same: Check }

/**
 * `absent`: endpoints of the service this app legitimately does not declare (the development mailbox with
 * MAIL_URL set). Schemas are compared by identity: a copy of the contract's schema, even an equal one, fails.
 */
export function assertInternalContracts (t: Asserts, app: FastifyInstance, service: InternalEndpoint['service'], opts: { absent?: (keyof typeof InternalEndpoints)[] } = {}): void {
  const routes = declaredInternalRoutes(app).filter((r) => r.method !== 'HEAD')
  const endpoints = Object.entries(InternalEndpoints) as [keyof typeof InternalEndpoints, InternalEndpoint][]
  for (const route of routes) {
    const found = endpoints.find(([, e]) => e.method === route.method && e.url === route.url)
    t.ok(found, `${route.method} ${route.url} is a contract (contracts' InternalEndpoints)`)
    if (!found) continue
    const [name, e] = found
    t.equal(e.service, service, `${name} is served by ${e.service}`)
    const schema = route.schema ?? {}
    for (const part of ['params', 'querystring', 'body'] as const) t.equal(schema[part], e[part], `${name}: the route's ${part} schema is the contract's`)
    const response = (schema.response ?? {}) as Record<string, unknown>
    t.equal(response[200], e.response, `${name}: the route's 200 schema is the contract's`)
    t.same(Object.keys(response).map(Number).filter((s) => s !== 200).sort(), [...e.problems].sort(), `${name}: the problem statuses are the contract's`)
  }
  for (const [name, e] of endpoints) {
    if (e.service !== service || opts.absent?.includes(name)) continue
    t.ok(routes.some((r) => r.method === e.method && r.url === e.url), `${service} serves ${name} (${e.method} ${e.url})`)
  }
}
