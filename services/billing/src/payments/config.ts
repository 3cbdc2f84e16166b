// Paid top-ups' configuration (DESIGN §6.2): the packages on sale and the WeChat Pay merchant, validated at boot.
import { Type } from 'typebox'
import Value from 'typebox/value'

/** Environment variables of paid top-ups (spread into billing's env schema). */
export const PaymentsEnv = {
  /** JSON `[{id, name, price_fen, tokens}]`; unset: DEFAULT_PACKAGES (refused in production with WeChat Pay configured). */
  RECHARGE_PACKAGES: Type.Optional(Type.String({ minLength: 1 })),
  /** An order can be paid this long; it is its `time_expire` at WeChat Pay. */
  ORDER_TTL_MINUTES: Type.Integer({ default: 30, minimum: 1, maximum: 7 * 24 * 60 }),
  /** How often each replica's poller looks for pending orders (0: no poller). */
  ORDER_POLL_MS: Type.Integer({ default: 15_000, minimum: 0 }),
  /** A pending order is queried by the poller once it is this old without a callback, and again this often. */
  ORDER_POLL_AFTER_MS: Type.Integer({ default: 60_000, minimum: 0 }),
  WECHATPAY_MCHID: Type.Optional(Type.String({ minLength: 1, pattern: '^[0-9]{1,32}$' })),
  /** The app the payer's openid belongs to (JSAPI); default WECHAT_APPID. */
  WECHATPAY_APPID: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  WECHAT_APPID: Type.Optional(Type.String({ minLength: 1 })),
  /** The serial number of the merchant's API certificate (the key below). */
  WECHATPAY_MERCHANT_SERIAL: Type.Optional(Type.String({ minLength: 1, pattern: '^[0-9A-Fa-f]{1,64}$' })),
  /** The merchant's RSA private key (PEM; `\n` escapes allowed): signs every request to WeChat Pay. */
  WECHATPAY_PRIVATE_KEY: Type.Optional(Type.String({ minLength: 1 })),
  /** The 32-byte APIv3 key: decrypts callback resources. */
  WECHATPAY_APIV3_KEY: Type.Optional(Type.String({ minLength: 32, maxLength: 32 })),
  /** WeChat Pay's public key (PEM) and its id (`PUB_KEY_ID_…`): verifies answers and callbacks. */
  WECHATPAY_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1 })),
  WECHATPAY_PUBLIC_KEY_ID: Type.Optional(Type.String({ minLength: 1 })),
  /** More WeChat Pay public keys during a rotation: JSON `[{"id": "PUB_KEY_ID_…", "pem": "-----BEGIN PUBLIC KEY-----…"}]`. */
  WECHATPAY_PUBLIC_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  /** Where WeChat Pay sends callbacks: the gateway's public POST /api/billing/wechatpay/notify (https, no query, in production). */
  WECHATPAY_NOTIFY_URL: Type.Optional(Type.String({ minLength: 1, pattern: '^https?://' })),
  WECHATPAY_API_BASE: Type.String({ default: 'https://api.mch.weixin.qq.com', pattern: '^https?://' })
}

export interface RechargePackage { id: string, name: string, price_fen: number, tokens: number }

export const RechargePackageSchema = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$' }),
  name: Type.String({ minLength: 1, maxLength: 64 }),
  price_fen: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
  tokens: Type.Integer({ minimum: 1, maximum: 1_000_000_000 })
}, { additionalProperties: false })

/** What a development machine sells when RECHARGE_PACKAGES is unset. */
export const DEFAULT_PACKAGES: RechargePackage[] = [
  { id: 'starter', name: '入门包 1000 tokens', price_fen: 990, tokens: 1000 },
  { id: 'standard', name: '标准包 6000 tokens', price_fen: 4900, tokens: 6000 },
  { id: 'pro', name: '专业包 13000 tokens', price_fen: 9900, tokens: 13000 }
]

export interface WechatPayPublicKey { id: string, pem: string }

/** A configured merchant: everything the WeChat Pay client needs. */
export interface WechatPayMerchant {
  mchid: string
  appid: string
  merchantSerial: string
  privateKey: string
  apiV3Key: string
  publicKeys: WechatPayPublicKey[]
  notifyUrl: string
  apiBase: string
}

/**
 * `wechatpay`: a merchant is configured; `simulated`: none, outside production (the built-in simulator takes its
 * place, labelled); `unavailable`: none, in production (ordering answers 503).
 */
export type PaymentsMode = 'wechatpay' | 'simulated' | 'unavailable'

export interface PaymentsConfig {
  mode: PaymentsMode
  merchant: WechatPayMerchant | null
  /** The appid orders are placed under (also in simulated mode: WECHATPAY_APPID, WECHAT_APPID or a placeholder). */
  appid: string
  packages: RechargePackage[]
  ttlMinutes: number
  pollMs: number
  pollAfterMs: number
}

type Env = { [K in keyof typeof PaymentsEnv]?: unknown } & { NODE_ENV: string }

const pem = (v: string) => v.includes('\\n') ? v.replaceAll('\\n', '\n') : v
const MERCHANT_VARS = ['WECHATPAY_MCHID', 'WECHATPAY_MERCHANT_SERIAL', 'WECHATPAY_PRIVATE_KEY', 'WECHATPAY_APIV3_KEY', 'WECHATPAY_NOTIFY_URL'] as const

export function parsePackages (text: string): RechargePackage[] {
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch { throw new Error('is not valid JSON') }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new Error('must be a non-empty JSON array of {id, name, price_fen, tokens}')
  const seen = new Set<string>()
  parsed.forEach((p, i) => {
    if (!Value.Check(RechargePackageSchema, p)) {
      const e = [...Value.Errors(RechargePackageSchema, p)][0]
      throw new Error(`[${i}]${e?.instancePath ?? ''} ${e?.message ?? 'is invalid'} (id: letters, digits, _ or -, 1–32; name 1–64 characters; price_fen and tokens positive integers)`)
    }
    if (seen.has(p.id)) throw new Error(`[${i}] repeats the id ${JSON.stringify(p.id)}`)
    seen.add(p.id)
  })
  return parsed as RechargePackage[]
}

function parsePublicKeys (env: Env): WechatPayPublicKey[] {
  const keys: WechatPayPublicKey[] = []
  if (env.WECHATPAY_PUBLIC_KEY !== undefined || env.WECHATPAY_PUBLIC_KEY_ID !== undefined) {
    if (env.WECHATPAY_PUBLIC_KEY === undefined || env.WECHATPAY_PUBLIC_KEY_ID === undefined) {
      throw new Error('WECHATPAY_PUBLIC_KEY and WECHATPAY_PUBLIC_KEY_ID: give both or neither')
    }
    keys.push({ id: String(env.WECHATPAY_PUBLIC_KEY_ID), pem: pem(String(env.WECHATPAY_PUBLIC_KEY)) })
  }
  if (env.WECHATPAY_PUBLIC_KEYS !== undefined) {
    let extra: unknown
    try { extra = JSON.parse(String(env.WECHATPAY_PUBLIC_KEYS)) } catch { throw new Error('WECHATPAY_PUBLIC_KEYS: is not valid JSON') }
    if (!Array.isArray(extra) || !extra.every((k) => typeof k?.id === 'string' && k.id !== '' && typeof k?.pem === 'string' && k.pem.includes('PUBLIC KEY'))) {
      throw new Error('WECHATPAY_PUBLIC_KEYS: must be a JSON array of {"id": "PUB_KEY_ID_…", "pem": "-----BEGIN PUBLIC KEY-----…"}')
    }
    for (const k of extra as WechatPayPublicKey[]) keys.push({ id: k.id, pem: pem(k.pem) })
  }
  const ids = keys.map((k) => k.id)
  if (new Set(ids).size !== ids.length) throw new Error('WECHATPAY_PUBLIC_KEYS: a key id is given twice')
  return keys
}

/** Reads the payments part of billing's (already schema-checked) environment; throws naming the variable. */
export function loadPaymentsConfig (env: Env): PaymentsConfig {
  const production = env.NODE_ENV === 'production'
  const given = MERCHANT_VARS.filter((k) => env[k] !== undefined)
  const publicKeys = parsePublicKeys(env)
  const appid = (env.WECHATPAY_APPID ?? env.WECHAT_APPID) as string | undefined
  let merchant: WechatPayMerchant | null = null
  if (given.length > 0 || publicKeys.length > 0) {
    const missing: string[] = MERCHANT_VARS.filter((k) => env[k] === undefined)
    if (publicKeys.length === 0) missing.push('WECHATPAY_PUBLIC_KEY')
    if (appid === undefined) missing.push('WECHATPAY_APPID')
    if (missing.length > 0) throw new Error(`${missing.join(', ')}: required once WeChat Pay is configured (${given.join(', ') || 'a public key'} given)`)
    const notifyUrl = new URL(String(env.WECHATPAY_NOTIFY_URL))
    if (production && notifyUrl.protocol !== 'https:') throw new Error('WECHATPAY_NOTIFY_URL: must be https when NODE_ENV=production (WeChat Pay refuses others)')
    if (notifyUrl.search !== '' || String(env.WECHATPAY_NOTIFY_URL).includes('?')) throw new Error('WECHATPAY_NOTIFY_URL: must carry no query string (WeChat Pay refuses it)')
    if (!String(env.WECHATPAY_PRIVATE_KEY).includes('PRIVATE KEY')) throw new Error('WECHATPAY_PRIVATE_KEY: must be the merchant\'s PEM private key (apiclient_key.pem)')
    merchant = {
      mchid: String(env.WECHATPAY_MCHID),
      appid: appid as string,
      merchantSerial: String(env.WECHATPAY_MERCHANT_SERIAL).toUpperCase(),
      privateKey: pem(String(env.WECHATPAY_PRIVATE_KEY)),
      apiV3Key: String(env.WECHATPAY_APIV3_KEY),
      publicKeys,
      notifyUrl: String(env.WECHATPAY_NOTIFY_URL),
      apiBase: String(env.WECHATPAY_API_BASE)
    }
  }
  if (production && merchant !== null && env.RECHARGE_PACKAGES === undefined) {
    throw new Error('RECHARGE_PACKAGES: required when NODE_ENV=production and WeChat Pay is configured (the development packages are not a price list)')
  }
  let packages: RechargePackage[]
  try {
    packages = env.RECHARGE_PACKAGES === undefined ? DEFAULT_PACKAGES : parsePackages(String(env.RECHARGE_PACKAGES))
  } catch (err) {
    throw new Error(`RECHARGE_PACKAGES: ${(err as Error).message}`)
  }
  return {
    mode: merchant !== null ? 'wechatpay' : production ? 'unavailable' : 'simulated',
    merchant,
    appid: appid ?? 'wxsimulated0000000',
    packages,
    ttlMinutes: Number(env.ORDER_TTL_MINUTES ?? 30),
    pollMs: Number(env.ORDER_POLL_MS ?? 15_000),
    pollAfterMs: Number(env.ORDER_POLL_AFTER_MS ?? 60_000)
  }
}
