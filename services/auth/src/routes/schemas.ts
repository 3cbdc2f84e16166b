// Route schemas of the auth service, built from the shared contracts.
import { Type } from 'typebox'
import { Email, Password, Nickname, AvatarUrl, ProblemSchema } from '@chat-platform/contracts'
import type { FastifyRequest } from 'fastify'
import { normalizeEmail } from '../config.ts'

/** Problem responses for the statuses a route can give (docs; the error handler serializes them). */
export const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ProblemSchema]))

// Nicknames and emails are trimmed before validation (see trimFields), so the limits apply to the trimmed text.
export const RegisterBodySchema = Type.Object({ email: Email, password: Password, nickname: Nickname })
export const ProfileUpdateBodySchema = Type.Object({
  nickname: Type.Optional(Nickname),
  avatar_url: Type.Optional(AvatarUrl)
})

/** preValidation hook factory: trims the named string fields of the body (and lower-cases `email`). */
export const trimFields = (...fields: string[]) => async (request: FastifyRequest) => {
  const body = request.body as Record<string, unknown> | null
  if (!body || typeof body !== 'object' || Array.isArray(body)) return
  for (const f of fields) {
    const v = body[f]
    if (typeof v === 'string') body[f] = f === 'email' ? normalizeEmail(v) : v.trim()
  }
}
