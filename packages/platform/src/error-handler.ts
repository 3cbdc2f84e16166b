// One error handler for every process: every error leaves as RFC 9457 problem+json with the request id.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ErrorCodes, problemType, type ErrorCode } from '@chat-platform/contracts'
import { ProblemError } from './errors.ts'

export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  code: string
  request_id: string
  errors?: { path: string, message: string }[]
}

export function problemBody (code: ErrorCode, detail: string, requestId: string, errors?: ProblemBody['errors']): ProblemBody {
  const { status, title } = ErrorCodes[code]
  const body: ProblemBody = { type: problemType(code), title, status, detail, code, request_id: requestId }
  if (errors) body.errors = errors
  return body
}

export function sendProblem (reply: FastifyReply, code: ErrorCode, detail: string, opts: { headers?: Record<string, string>, errors?: ProblemBody['errors'] } = {}) {
  const body = problemBody(code, detail, String(reply.request.id), opts.errors)
  if (opts.headers) reply.headers(opts.headers)
  return reply.code(body.status).type('application/problem+json').serializer(JSON.stringify).send(body)
}

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', '53300', '57P01', '57P02', '57P03'])
const UNREACHABLE_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused)/i

/** A database (or other dependency) that cannot be reached right now: 503, not a 500 (DESIGN §2). */
export function isUnreachable (err: unknown): boolean {
  for (let e = err as { code?: unknown, message?: unknown, cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    const code = typeof e.code === 'string' ? e.code : ''
    if (UNREACHABLE_CODES.has(code) || code.startsWith('08')) return true
    if (typeof e.message === 'string' && UNREACHABLE_MESSAGES.test(e.message)) return true
  }
  return false
}

/** Maps any thrown error to a problem code; unknown errors are 500 with a hidden message. */
export function classify (err: FastifyError & { validation?: unknown[] }): { code: ErrorCode, detail: string, errors?: ProblemBody['errors'], headers?: Record<string, string> } {
  if (err instanceof ProblemError) return { code: err.code, detail: err.message, errors: err.errors, headers: err.headers }
  if (err.validation) {
    const ctx = (err as { validationContext?: string }).validationContext ?? 'body'
    const errors = (err.validation as { instancePath?: string, message?: string, params?: Record<string, unknown> }[]).map((v) => {
      const missing = v.params?.missingProperty
      const path = `/${ctx}${v.instancePath ?? ''}${missing ? `/${String(missing)}` : ''}`
      return { path, message: v.message ?? 'is invalid' }
    })
    return { code: 'validation_failed', detail: `The request ${ctx} is invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}.`, errors }
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return { code: 'payload_too_large', detail: 'The request body is larger than 1 MiB.' }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return { code: 'validation_failed', detail: 'The request body must be JSON (Content-Type: application/json).' }
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { code: 'validation_failed', detail: 'The request body is not valid JSON.' }
  }
  if (err.code?.startsWith('FST_JWT_')) return { code: 'unauthorized', detail: 'A valid bearer token is required.', headers: { 'www-authenticate': 'Bearer' } }
  if (err.statusCode === 429) return { code: 'rate_limited', detail: err.message || 'Too many requests; slow down.' }
  if (err.statusCode === 404) return { code: 'not_found', detail: 'No such resource.' }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500 && (err as { name?: string }).name === 'SyntaxError') {
    return { code: 'validation_failed', detail: 'The request body is not valid JSON.' }
  }
  if (err.statusCode === 413) return { code: 'payload_too_large', detail: 'The request body is larger than 1 MiB.' }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return { code: 'validation_failed', detail: err.message }
  if (isUnreachable(err)) return { code: 'service_unavailable', detail: 'A service this request needs is unavailable; try again shortly.' }
  return { code: 'internal_error', detail: 'An internal error occurred; it has been logged with the request id.' }
}

/**
 * Fastify's `frameworkErrors`: what its router refuses before any hook runs (so the request id header is set here).
 * A malformed percent-encoding in the path is a 400 problem like every other error, not Fastify's own JSON.
 */
export function frameworkErrors (err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  reply.header('x-request-id', request.id)
  switch (err.code) {
    case 'FST_ERR_BAD_URL':
      request.log.info({ code: 'validation_failed' }, 'request rejected: malformed percent-encoding')
      return sendProblem(reply, 'validation_failed', 'The request path has a malformed percent-encoding.', { errors: [{ path: '/path', message: 'malformed percent-encoding' }] })
    case 'FST_ERR_MAX_PARAM_LENGTH':
      request.log.info({ code: 'validation_failed' }, 'request rejected: path parameter too long')
      return sendProblem(reply, 'validation_failed', 'A path parameter is too long.', { errors: [{ path: '/params', message: 'too long' }] })
  }
  request.log.error({ err }, 'request failed')
  return sendProblem(reply, 'internal_error', 'An internal error occurred; it has been logged with the request id.')
}

async function errorHandler (app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const c = classify(err)
    const status = ErrorCodes[c.code].status
    if (err instanceof ProblemError && err.shed) request.log.warn({ code: c.code, detail: c.detail }, 'request shed')
    else if (status >= 500) request.log.error({ err }, 'request failed')
    else request.log.info({ code: c.code, detail: c.detail }, 'request rejected')
    return sendProblem(reply, c.code, c.detail, { headers: c.headers, errors: c.errors })
  })
  app.setNotFoundHandler((request, reply) => sendProblem(reply, 'not_found', `No route ${request.method} ${request.url.split('?')[0]}.`))
}

export const errorHandlerPlugin = fp(errorHandler, { name: 'error-handler', fastify: '5.x' })
