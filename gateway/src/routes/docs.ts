// GET /docs (browsable UI) and /docs/json: one OpenAPI document merged at request time from every service's /openapi.json.
import type { FastifyInstance } from 'fastify'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import { mergeOpenApi, type OpenApiDocument } from '../openapi-merge.ts'
import type { Upstreams } from '../upstreams.ts'
import { registerRateLimit } from '../plugins/rate-limit.ts'
import type { Redis } from '@chat-platform/platform'

export interface DocsOptions {
  upstreams: Upstreams
  redis: Redis
  cacheMs: number
  fetchTimeoutMs?: number
  rateLimit: { max: number, windowMs: number }
}

export default async function docsRoutes (app: FastifyInstance, opts: DocsOptions) {
  const timeout = opts.fetchTimeoutMs ?? 3_000
  let cached: { document: OpenApiDocument, at: number, complete: boolean } | undefined
  let building: Promise<void> | undefined

  async function fetchDocument (name: string): Promise<OpenApiDocument | Error> {
    const upstream = opts.upstreams[name as keyof Upstreams]
    try {
      const res = await upstream.dispatcher.request({ origin: upstream.origin, path: '/openapi.json', method: 'GET', headersTimeout: timeout, bodyTimeout: timeout })
      if (res.statusCode !== 200) {
        await res.body.dump()
        throw new Error(`answered ${res.statusCode}`)
      }
      return await res.body.json() as OpenApiDocument
    } catch (err) {
      app.gatewayMetrics.docsFetchErrors.labels(name).inc()
      return err as Error
    }
  }

  async function rebuild () {
    const names = Object.keys(opts.upstreams)
    const docs = await Promise.all(names.map(fetchDocument))
    const { document, warnings } = mergeOpenApi(Object.fromEntries(names.map((n, i) => [n, docs[i]])))
    if (warnings.length) app.log.warn({ warnings }, 'OpenAPI merge incomplete')
    cached = { document, at: Date.now(), complete: !docs.some((d) => d instanceof Error) }
  }

  // An incomplete document (a service was down) is kept only briefly, so it heals as soon as the service is back.
  const fresh = () => cached && Date.now() - cached.at < (cached.complete ? opts.cacheMs : Math.min(opts.cacheMs, 2_000))
  async function ensureFresh () {
    if (fresh()) return
    building ??= rebuild().finally(() => { building = undefined })
    await building
  }

  await registerRateLimit(app, { zone: 'docs', redis: opts.redis, nameSpace: 'gw:rl:', ...opts.rateLimit })
  // @fastify/swagger in static mode only satisfies swagger-ui; the document it serves is ours, rebuilt above.
  await app.register(fastifySwagger, { mode: 'static', specification: { document: { openapi: '3.0.3', info: { title: 'chat-platform API', version: '1.0.0' }, paths: {} } } })
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    uiHooks: { preHandler: async () => { await ensureFresh() } },
    transformSpecificationClone: false,
    transformSpecification: () => cached!.document
  })
}
