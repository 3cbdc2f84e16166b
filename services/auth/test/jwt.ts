// Test helpers for looking inside tokens and forging bad ones.
import { sign } from 'node:crypto'

export const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

export function decodeJwt (token: string): { header: Record<string, unknown>, payload: Record<string, unknown> } {
  const [h, p] = token.split('.')
  return { header: JSON.parse(Buffer.from(h, 'base64url').toString()), payload: JSON.parse(Buffer.from(p, 'base64url').toString()) }
}

/** Signs any header and payload with an Ed25519 key, bypassing every rule a real signer enforces. */
export function signEdDSA (payload: Record<string, unknown>, privateKey: string): string {
  const input = `${b64({ alg: 'EdDSA', typ: 'JWT' })}.${b64(payload)}`
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`
}
