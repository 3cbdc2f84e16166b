// Application errors: thrown anywhere, rendered as RFC 9457 problem+json by the error handler.
import { ErrorCodes, ProblemSchema, type ErrorCode } from '@chat-platform/contracts'

export class ProblemError extends Error {
  readonly statusCode: number
  readonly code: ErrorCode
  readonly headers: Record<string, string>
  readonly errors?: { path: string, message: string }[]
  /**
   * Load shedding: work refused because the service is full right now, not because anything failed. The error
   * handler logs it as a warning without a stack (a flood would otherwise write an error and a stack per request).
   */
  readonly shed: boolean

  constructor (code: ErrorCode, detail: string, opts: { headers?: Record<string, string>, errors?: { path: string, message: string }[], cause?: unknown, shed?: boolean } = {}) {
    super(detail, { cause: opts.cause })
    this.name = 'ProblemError'
    this.code = code
    this.statusCode = ErrorCodes[code].status
    this.headers = opts.headers ?? {}
    if (opts.errors) this.errors = opts.errors
    this.shed = opts.shed ?? false
  }
}

export const problem = (code: ErrorCode, detail: string, opts?: ConstructorParameters<typeof ProblemError>[2]) => new ProblemError(code, detail, opts)

export const notFound = (what = 'resource') => new ProblemError('not_found', `No such ${what}.`)
export const validationFailed = (path: string, message: string) =>
  new ProblemError('validation_failed', `${path.replace(/^\//, '') || 'request'} ${message}`, { errors: [{ path, message }] })
export const unauthorized = (detail = 'A valid bearer token is required.') =>
  new ProblemError('unauthorized', detail, { headers: { 'www-authenticate': 'Bearer' } })

/** A route schema's problem responses for the statuses it can give (docs; the error handler serializes them). */
export const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ProblemSchema]))
