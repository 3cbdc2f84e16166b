// Access tokens for synthetic users, signed in the bench with the system's own key (as auth signs them): many
// distinct tokens without a login each. One Ed25519 signature per token (~50 µs).
import { createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto'

const b64url = (s: string | Buffer) => Buffer.from(s).toString('base64url')
const HEADER = b64url(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' }))

export function tokenSigner (privateKeyPem: string, issuer = 'chat-platform', ttlSeconds = 3600): (userId: number, claims?: Record<string, unknown>) => string {
  const key: KeyObject = createPrivateKey(privateKeyPem)
  return (userId, claims = {}) => {
    const iat = Math.floor(Date.now() / 1000)
    const payload = b64url(JSON.stringify({ sub: String(userId), iat, exp: iat + ttlSeconds, iss: issuer, jti: randomUUID(), sid: randomUUID(), ...claims }))
    const data = `${HEADER}.${payload}`
    return `${data}.${sign(null, Buffer.from(data), key).toString('base64url')}`
  }
}
