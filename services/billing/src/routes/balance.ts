// GET /api/user/balance: the caller's token balance (the account opens with the signup bonus on first read).
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { BalanceResponseSchema } from '@chat-platform/contracts'
import type { BillingDeps } from '../deps.ts'
import { readBalance } from '../ledger.ts'
import { writeBalanceCache } from '../balance-cache.ts'
import { problems } from './schemas.ts'
import { unauthorized } from '@chat-platform/platform'

export async function balanceRoutes (fastify: FastifyInstance, opts: { deps: BillingDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db, redis, rules } = opts.deps

  app.get('/api/user/balance', {
    schema: { tags: ['billing'], security: [{ bearer: [] }], response: { 200: BalanceResponseSchema, ...problems(401) } },
    onRequest: app.authenticate
  }, async (request) => {
    if (!(await opts.deps.knownUser(request.user.id, String(request.id)))) throw unauthorized('The bearer token is invalid or expired.')
    const acc = await readBalance(db, request.user.id, rules)
    if (acc.opened) await writeBalanceCache(redis, new Map([[request.user.id, acc]]), request.log)
    return { balance: acc.balance }
  })
}
