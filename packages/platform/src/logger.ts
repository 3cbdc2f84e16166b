// pino options shared by every process: levels, service name, redaction of secrets.
import type { LoggerOptions } from 'pino'

export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["idempotency-key"]',
  'password',
  '*.password',
  'access_token',
  '*.access_token',
  'session_key',
  '*.session_key',
  'secret',
  '*.secret',
  'JWT_PRIVATE_KEY',
  'OPENAI_API_KEY',
  'WECHAT_SECRET'
]

export function loggerOptions (service: string, level: string): LoggerOptions {
  return {
    level,
    base: { service },
    redact: { paths: redactPaths, censor: '[redacted]' },
    timestamp: () => `,"time":"${new Date().toISOString()}"`
  }
}
