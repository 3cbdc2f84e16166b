// RSA 2048 key pairs and ids shaped like WeChat Pay's: merchant certificate serials and platform public key ids.
import { generateKeyPair, randomBytes, randomInt } from 'node:crypto'
import { promisify } from 'node:util'
import type { PlatformKey } from './engine.ts'

const generate = promisify(generateKeyPair)

/** A fresh RSA 2048 key pair as PEM (PKCS#8 private, SPKI public). */
export async function rsaKeyPair (): Promise<{ privateKey: string, publicKey: string }> {
  return await generate('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
}

/** A merchant API certificate serial: 40 upper-case hex characters. */
export const merchantSerial = (): string => randomBytes(20).toString('hex').toUpperCase()

/** A WeChat Pay public key id: `PUB_KEY_ID_` and 32 digits. */
export const publicKeyId = (): string => `PUB_KEY_ID_${Array.from({ length: 32 }, () => randomInt(10)).join('')}`

/** A fresh platform key pair with an id. */
export async function generatePlatformKey (keyId = publicKeyId()): Promise<PlatformKey> {
  return { keyId, ...(await rsaKeyPair()) }
}

/** A fresh APIv3 key: 32 characters. */
export const apiV3Key = (): string => randomBytes(16).toString('hex')
