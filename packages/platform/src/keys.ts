// JWT keys: Ed25519 PEM from the environment, or a development pair generated once into .keys/ (never in production).
import { generateKeyPairSync, createPublicKey } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync, linkSync, unlinkSync, existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ConfigError } from './config.ts'

export const DEV_KEYS_DIR = resolve(import.meta.dirname, '../../../.keys')

export interface KeyPair { privateKey: string, publicKey: string }

function ensureDevKeys (dir: string): KeyPair {
  const priv = join(dir, 'jwt-ed25519.pem')
  const pub = join(dir, 'jwt-ed25519.pub.pem')
  if (!existsSync(priv)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const pair = generateKeyPairSync('ed25519')
    const tmp = `${priv}.${process.pid}.tmp`
    writeFileSync(tmp, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
    try {
      // link() fails if the file exists: of several processes booting at once, exactly one pair wins.
      linkSync(tmp, priv)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    } finally { unlinkSync(tmp) }
  }
  const privateKey = readFileSync(priv, 'utf8')
  const publicKey = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString()
  if (!existsSync(pub)) writeFileSync(pub, publicKey)
  return { privateKey, publicKey }
}

const pem = (v: string) => v.includes('\\n') ? v.replaceAll('\\n', '\n') : v

/** The public key every verifier uses. */
export function loadPublicKey (env: { NODE_ENV: string, JWT_PUBLIC_KEY?: string }, dir = DEV_KEYS_DIR): string {
  if (env.JWT_PUBLIC_KEY) return pem(env.JWT_PUBLIC_KEY)
  if (env.NODE_ENV === 'production') throw new ConfigError(['JWT_PUBLIC_KEY: required when NODE_ENV=production (development keys are refused)'])
  return ensureDevKeys(dir).publicKey
}

/** The signing pair (auth only). */
export function loadKeyPair (env: { NODE_ENV: string, JWT_PUBLIC_KEY?: string, JWT_PRIVATE_KEY?: string }, dir = DEV_KEYS_DIR): KeyPair {
  if (env.JWT_PRIVATE_KEY) {
    const privateKey = pem(env.JWT_PRIVATE_KEY)
    const publicKey = env.JWT_PUBLIC_KEY ? pem(env.JWT_PUBLIC_KEY) : createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString()
    return { privateKey, publicKey }
  }
  if (env.NODE_ENV === 'production') throw new ConfigError(['JWT_PRIVATE_KEY: required when NODE_ENV=production (development keys are refused)'])
  return ensureDevKeys(dir)
}
