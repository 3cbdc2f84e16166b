// Stable machine-readable error codes (DESIGN §2 "Errors") and the RFC 9457 problem schema.
import { Type, type Static } from 'typebox'

export const ErrorCodes = {
  validation_failed: { status: 400, title: 'Validation failed' },
  code_invalid: { status: 400, title: 'Code invalid' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  invalid_credentials: { status: 401, title: 'Invalid credentials' },
  wechat_code_invalid: { status: 401, title: 'WeChat code invalid' },
  invalid_refresh_token: { status: 401, title: 'Invalid refresh token' },
  insufficient_balance: { status: 402, title: 'Insufficient balance' },
  forbidden: { status: 403, title: 'Forbidden' },
  not_found: { status: 404, title: 'Not found' },
  email_taken: { status: 409, title: 'Email taken' },
  idempotency_conflict: { status: 409, title: 'Idempotency conflict' },
  redemption_used: { status: 409, title: 'Redemption code already used' },
  redemption_expired: { status: 409, title: 'Redemption code expired' },
  not_last_reply: { status: 409, title: 'Not the last reply' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  rate_limited: { status: 429, title: 'Too many requests' },
  internal_error: { status: 500, title: 'Internal server error' },
  upstream_error: { status: 502, title: 'Upstream error' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
  upstream_timeout: { status: 504, title: 'Upstream timeout' }
} as const

export type ErrorCode = keyof typeof ErrorCodes

export const ProblemSchema = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String(),
  request_id: Type.String(),
  errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() })))
}, { $id: 'Problem' })
export type Problem = Static<typeof ProblemSchema>

/** The `type` URI of a problem: stable, documented in the README. */
export function problemType (code: string): string {
  return `https://chat-platform.dev/problems/${code.replaceAll('_', '-')}`
}
