// JWT helpers for tests: an Ed25519 pair per test process and a signer that mints tokens like auth does.
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { createSigner } from 'fast-jwt'

const pair = generateKeyPairSync('ed25519')
export const testKeys = {
  privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString()
}

/** Signs a token for `userId` with the test key (or `privateKey`), issuer `chat-platform`, 1 h by default. */
export function signTestToken (userId: number | string, claims: Record<string, unknown> = {}, opts: { privateKey?: string, expiresInMs?: number, issuer?: string } = {}): string {
  const sign = createSigner({ key: opts.privateKey ?? testKeys.privateKey, algorithm: 'EdDSA', expiresIn: opts.expiresInMs ?? 3600_000, iss: opts.issuer ?? 'chat-platform' })
  return sign({ sub: String(userId), jti: randomUUID(), ...claims })
}
