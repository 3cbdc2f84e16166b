// GET /api/models: the models a user may pick for a session or a message, with their prices and context windows.
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ChatModelSchema, ProblemSchema } from '@chat-platform/contracts'
import type { ChatDeps } from '../deps.ts'

export async function modelRoutes (fastify: FastifyInstance, opts: { deps: ChatDeps }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { models } = opts.deps
  app.addHook('onRequest', app.authenticate)
  // Fixed at boot: built once, served as is.
  const list = models.list.map((m) => ({ ...m }))

  app.get('/api/models', {
    schema: {
      tags: ['chat'],
      summary: 'The models to chat with (ratios: tokens charged per prompt and per reply token)',
      security: [{ bearer: [] }],
      response: { 200: Type.Array(ChatModelSchema), 401: ProblemSchema }
    }
  }, async () => list)
}
