// Merges the services' OpenAPI documents into the gateway's one document: paths, schemas (renamed on conflict), security, edge errors.
import { STATUS_CODES } from 'node:http'
import { isDeepStrictEqual } from 'node:util'
import { ProblemSchema } from '@chat-platform/contracts'
import { PUBLIC_OPERATIONS } from './routing.ts'

type Json = Record<string, any>
export interface OpenApiDocument extends Json {
  openapi: string
  info: Json
  paths: Record<string, Record<string, Json>>
  components: Json
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options']
const problemContent = { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } }
const EDGE_RESPONSES: Record<string, { description: string, publicToo: boolean }> = {
  401: { description: 'Missing, malformed, expired or wrongly signed bearer token (`unauthorized`)', publicToo: false },
  413: { description: 'Body over 1 MiB (`payload_too_large`)', publicToo: true },
  429: { description: 'Rate limited (`rate_limited`); see `Retry-After`', publicToo: true },
  503: { description: 'The service behind this route cannot be reached, or cannot take the request now (`service_unavailable`; see `Retry-After` when present)', publicToo: true }
}

/**
 * A service's own error responses, as @fastify/swagger writes them ("Default Response", the problem schema inline
 * under `application/json`), become what the client receives: `application/problem+json` with the shared Problem.
 */
function asProblemResponses (responses: Json): Json {
  const out: Json = { ...responses }
  for (const [status, r] of Object.entries<Json>(responses)) {
    const schema = r?.content?.['application/json']?.schema
    if (Number(status) < 400 || !Array.isArray(schema?.required) || !schema.required.includes('code') || !schema.required.includes('request_id')) continue
    const description = r.description && r.description !== 'Default Response' ? r.description : `${STATUS_CODES[Number(status)] ?? status}: a problem whose \`code\` says which`
    out[status] = { description, content: problemContent }
  }
  return out
}

/** Rewrites `#/components/schemas/<from>` references to `<to>` everywhere in `node`. */
function renameRefs (node: unknown, from: string, to: string): unknown {
  if (Array.isArray(node)) return node.map((n) => renameRefs(n, from, to))
  if (node && typeof node === 'object') {
    const out: Json = {}
    for (const [k, v] of Object.entries(node)) {
      out[k] = k === '$ref' && v === `#/components/schemas/${from}` ? `#/components/schemas/${to}` : renameRefs(v, from, to)
    }
    return out
  }
  return node
}

export function mergeOpenApi (docs: Record<string, OpenApiDocument | Error>): { document: OpenApiDocument, warnings: string[] } {
  const warnings: string[] = []
  const unavailable: string[] = []
  const { $id: _id, ...problem } = ProblemSchema as Json
  const merged: OpenApiDocument = {
    openapi: '3.0.3',
    info: {
      title: 'chat-platform API',
      version: '1.0.0',
      description: 'The public HTTP API, served by the gateway. Generated from the route schemas of the auth, chat and billing services. ' +
        'Errors are RFC 9457 `application/problem+json`; every answer carries `X-Request-Id`.'
    },
    servers: [{ url: '/' }],
    tags: [],
    paths: {},
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Problem: problem }
    }
  }
  for (const [service, doc] of Object.entries(docs)) {
    if (doc instanceof Error) {
      unavailable.push(service)
      warnings.push(`${service}: ${doc.message}`)
      continue
    }
    let current: Json = doc
    for (const [name, schema] of Object.entries<Json>(doc.components?.schemas ?? {})) {
      const existing = merged.components.schemas[name]
      if (existing === undefined || isDeepStrictEqual(existing, schema)) {
        merged.components.schemas[name] = schema
      } else {
        const renamed = `${service}_${name}`
        current = renameRefs(current, name, renamed) as Json
        merged.components.schemas[renamed] = renameRefs(schema, name, renamed)
      }
    }
    for (const tag of current.tags ?? []) if (!merged.tags.some((t: Json) => t.name === tag.name)) merged.tags.push(tag)
    for (const [path, item] of Object.entries<Json>(current.paths ?? {})) {
      const target = merged.paths[path] ??= {}
      for (const [method, operation] of Object.entries<Json>(item)) {
        if (!METHODS.includes(method)) { target[method] ??= operation; continue }
        if (target[method]) { warnings.push(`${method.toUpperCase()} ${path} is described by two services; kept the first`); continue }
        const isPublic = PUBLIC_OPERATIONS.has(`${method.toUpperCase()} ${path}`)
        const op: Json = { ...operation, 'x-service': service, responses: asProblemResponses(operation.responses ?? {}) }
        op.security ??= isPublic ? [] : [{ bearer: [] }]
        for (const [status, r] of Object.entries(EDGE_RESPONSES)) {
          if ((isPublic && !r.publicToo) || op.responses[status]) continue
          op.responses[status] = { description: r.description, content: problemContent }
        }
        target[method] = op
      }
    }
  }
  if (unavailable.length) {
    merged.info.description += ` Not included right now (service unreachable): ${unavailable.join(', ')}.`
    merged['x-unavailable-services'] = unavailable
  }
  return { document: merged, warnings }
}
