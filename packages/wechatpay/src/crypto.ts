// WeChat Pay API v3 cryptography on node:crypto: the signed messages, RSA-SHA256 signatures, AEAD_AES_256_GCM resources.
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, createSign, createVerify, randomBytes, type KeyObject } from 'node:crypto'

export const AUTH_SCHEMA = 'WECHATPAY2-SHA256-RSA2048'
/** How far a signed timestamp may be from now (WeChat Pay's rule for answers and callbacks). */
export const TIMESTAMP_WINDOW_SECONDS = 300

/** The message a merchant request signs: `METHOD\nURL(path+query)\ntimestamp\nnonce\nbody\n`. */
export function buildRequestMessage (method: string, url: string, timestamp: string, nonce: string, body: string): string {
  return `${method.toUpperCase()}\n${url}\n${timestamp}\n${nonce}\n${body}\n`
}

/** The message an answer or callback signs: `timestamp\nnonce\nbody\n` (the raw body bytes). */
export function buildSignatureMessage (timestamp: string, nonce: string, body: Buffer | string): Buffer {
  return Buffer.concat([Buffer.from(`${timestamp}\n${nonce}\n`), Buffer.isBuffer(body) ? body : Buffer.from(body), Buffer.from('\n')])
}

export const privateKeyOf = (pem: string | KeyObject): KeyObject => typeof pem === 'string' ? createPrivateKey(pem) : pem
export const publicKeyOf = (pem: string | KeyObject): KeyObject => typeof pem === 'string' ? createPublicKey(pem) : pem

/** RSA-SHA256 (PKCS#1 v1.5) signature, base64. */
export function sign (message: string | Buffer, privateKey: KeyObject): string {
  return createSign('RSA-SHA256').update(message).sign(privateKey, 'base64')
}

/** Whether a base64 RSA-SHA256 signature verifies; never throws. */
export function verify (message: string | Buffer, signature: string, publicKey: KeyObject): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signature)) return false
  try {
    return createVerify('RSA-SHA256').update(message).verify(publicKey, signature, 'base64')
  } catch {
    return false
  }
}

/** 32 random upper-case hex characters (nonce_str / Wechatpay-Nonce). */
export const nonce = (): string => randomBytes(16).toString('hex').toUpperCase()

/** Unix seconds as WeChat Pay writes them. */
export const unixSeconds = (ms: number): string => String(Math.floor(ms / 1000))

/** The `Authorization` header of a signed merchant request. */
export function buildAuthorization (p: { mchid: string, serial: string, privateKey: KeyObject, method: string, url: string, body: string, timestamp: string, nonce: string }): string {
  const signature = sign(buildRequestMessage(p.method, p.url, p.timestamp, p.nonce, p.body), p.privateKey)
  return `${AUTH_SCHEMA} mchid="${p.mchid}",nonce_str="${p.nonce}",signature="${signature}",timestamp="${p.timestamp}",serial_no="${p.serial}"`
}

/** The fields of an `Authorization: WECHATPAY2-SHA256-RSA2048 k="v",…` header, or null when it is not one. */
export function parseAuthorization (header: string | undefined): { mchid: string, nonce_str: string, signature: string, timestamp: string, serial_no: string } | null {
  if (!header?.startsWith(`${AUTH_SCHEMA} `)) return null
  const fields: Record<string, string> = {}
  for (const part of header.slice(AUTH_SCHEMA.length + 1).split(',')) {
    const m = /^\s*([a-z_]+)="([^"]*)"\s*$/.exec(part)
    if (!m) return null
    fields[m[1]] = m[2]
  }
  const { mchid, nonce_str: nonceStr, signature, timestamp, serial_no: serialNo } = fields
  if (!mchid || !nonceStr || !signature || !timestamp || !serialNo) return null
  return { mchid, nonce_str: nonceStr, signature, timestamp, serial_no: serialNo }
}

/** An encrypted callback resource (AEAD_AES_256_GCM: ciphertext is base64 of ciphertext ‖ 16-byte tag). */
export interface EncryptedResource {
  algorithm: 'AEAD_AES_256_GCM'
  ciphertext: string
  nonce: string
  associated_data: string
  original_type: string
}

function aesKey (apiV3Key: string): Buffer {
  const key = Buffer.from(apiV3Key, 'utf8')
  if (key.length !== 32) throw new RangeError('the APIv3 key must be 32 bytes')
  return key
}

/** Encrypts a plaintext the way WeChat Pay encrypts callback resources (12-character nonce). */
export function encryptResource (plaintext: string, apiV3Key: string, opts: { nonce?: string, associatedData?: string, originalType?: string } = {}): EncryptedResource {
  const iv = opts.nonce ?? randomBytes(6).toString('hex')
  const ad = opts.associatedData ?? 'transaction'
  const cipher = createCipheriv('aes-256-gcm', aesKey(apiV3Key), Buffer.from(iv, 'utf8'))
  cipher.setAAD(Buffer.from(ad, 'utf8'))
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()])
  return { algorithm: 'AEAD_AES_256_GCM', ciphertext: ct.toString('base64'), nonce: iv, associated_data: ad, original_type: opts.originalType ?? 'transaction' }
}

/** Decrypts an AEAD_AES_256_GCM resource; throws when the key, nonce, associated data or ciphertext do not match. */
export function decryptResource (resource: { ciphertext: string, nonce: string, associated_data?: string }, apiV3Key: string): string {
  const data = Buffer.from(resource.ciphertext, 'base64')
  if (data.length < 17) throw new Error('ciphertext too short')
  const decipher = createDecipheriv('aes-256-gcm', aesKey(apiV3Key), Buffer.from(resource.nonce, 'utf8'))
  decipher.setAAD(Buffer.from(resource.associated_data ?? '', 'utf8'))
  decipher.setAuthTag(data.subarray(data.length - 16))
  return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]).toString('utf8')
}
