// GET /api/user/balance: the caller's token balance (the account opens with the signup bonus on first read).
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { BalanceResponseSchema } from '@chat-platform/contracts'
import type { BillingDeps } from '../deps.ts'
import { balanceOf } from '../post.ts'
import { problems } from './schemas.ts'
import { unauthorized } from '@chat-platform/platform'

export async function balanceRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { rules } = opts.deps

  app.get('/api/user/balance', {
    schema: { tags: ['billing'], summary: 'The caller\'s token balance', security: [{ bearer: [] }], response: { 200: BalanceResponseSchema, ...problems(401) } },
    onRequest: app.authenticate
  }, async (request) => {
    if (!(await opts.deps.knownUser(request.user.id, String(request.id)))) throw unauthorized('The bearer token is invalid or expired.')
    const acc = await balanceOf(opts.deps, request.user.id, rules, { log: request.log })
    return { balance: acc.balance }
  })
}
