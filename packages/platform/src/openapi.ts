// Each service describes its public routes as OpenAPI 3 at GET /openapi.json; the gateway merges them into /docs.
import fp from 'fastify-plugin'
import fastifySwagger from '@fastify/swagger'
import type { FastifyInstance } from 'fastify'

async function openapi (app: FastifyInstance, opts: { service: string }) {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: `chat-platform ${opts.service}`, version: '1.0.0' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } }
    },
    // Only the public API: internal and health routes stay out of the document.
    transform: ({ schema, url, route }) => {
      const hide = !url.startsWith('/api/') || (schema as { hide?: boolean })?.hide
      return { schema: hide ? { ...schema, hide: true } : schema, url, route } as never
    }
  })
  app.get('/openapi.json', { schema: { hide: true } as object, logLevel: 'warn' }, async () => app.swagger())
}

export const openapiPlugin = fp(openapi, { name: 'openapi', fastify: '5.x' })
