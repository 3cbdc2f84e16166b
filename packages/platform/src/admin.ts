// The admin check the owning services make again behind the gateway (DESIGN §6.2): role "admin" on a verified token.
import type { FastifyRequest } from 'fastify'
import { ProblemError } from './errors.ts'

/**
 * A hook to run after `app.authenticate` (e.g. `onRequest: [app.authenticate, requireAdmin]`): 403 `forbidden`
 * unless the verified token carries `role: "admin"`. The gateway refuses such tokens first; this is the second
 * check, so a request that reached the service another way (a misrouted proxy, a replica's open port) is refused too.
 */
export async function requireAdmin (request: FastifyRequest): Promise<void> {
  if ((request.user as { role?: string } | undefined)?.role !== 'admin') {
    throw new ProblemError('forbidden', 'This route is reserved to administrators.')
  }
}
