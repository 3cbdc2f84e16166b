// Route helpers of the auth service (its schemas are the shared contracts').
import type { FastifyRequest } from 'fastify'
import { normalizeEmail } from '../config.ts'

export { problems } from '@chat-platform/platform'

/** preValidation hook factory: trims the named string fields of the body (and lower-cases `email`). */
export const trimFields = (...fields: string[]) => async (request: FastifyRequest) => {
  const body = request.body as Record<string, unknown> | null
  if (!body || typeof body !== 'object' || Array.isArray(body)) return
  for (const f of fields) {
    const v = body[f]
    if (typeof v === 'string') body[f] = f === 'email' ? normalizeEmail(v) : v.trim()
  }
}
