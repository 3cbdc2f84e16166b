// The Fastify instance every process starts from: logger, request ids, body limit, validation, problem errors.
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { loggerOptions } from './logger.ts'
import { validatorCompiler } from './validation.ts'
import { errorHandlerPlugin } from './error-handler.ts'

export const BODY_LIMIT = 1024 * 1024
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export interface HttpAppOptions {
  service: string
  logLevel: string
  /** Extra Fastify options (tests pass `logger: false` through logLevel 'silent'). */
  fastify?: FastifyServerOptions
}

export function createHttpApp (opts: HttpAppOptions) {
  const app = Fastify({
    logger: loggerOptions(opts.service, opts.logLevel),
    bodyLimit: BODY_LIMIT,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    forceCloseConnections: false,
    return503OnClosing: true,
    ...opts.fastify
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.setValidatorCompiler(validatorCompiler())
  app.addHook('onRequest', async (request, reply) => { reply.header('x-request-id', request.id) })
  app.register(errorHandlerPlugin)
  return app
}

export type HttpApp = ReturnType<typeof createHttpApp>
export type AnyApp = FastifyInstance
