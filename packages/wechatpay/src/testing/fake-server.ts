// A fake WeChat Pay (API v3) on loopback for tests: real signatures both ways, orders in memory, callbacks delivered
// to a notify URL signed and encrypted, and knobs for every way WeChat Pay or the network can misbehave.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildSignatureMessage, privateKeyOf, sign } from '../crypto.ts'
import { FOREIGN_KEY_ID, WechatPayEngine, type NotificationOptions, type PlatformKey, type StoredOrder } from '../engine.ts'
import { apiV3Key, generatePlatformKey, merchantSerial, publicKeyId, rsaKeyPair } from '../keys.ts'
import { generateKeyPairSync } from 'node:crypto'
import type { SignedNotification, TradeState, WechatPayConfig } from '../types.ts'

export { buildSignatureMessage, decryptResource, encryptResource, buildAuthorization, parseAuthorization } from '../crypto.ts'
export { beijingTime, FOREIGN_KEY_ID, WechatPayEngine, type MerchantRegistration, type NotificationOptions, type PlatformKey, type StoredOrder } from '../engine.ts'
export { generatePlatformKey, publicKeyId } from '../keys.ts'

/** Everything one merchant and its WeChat Pay need: the merchant key pair and serial, a platform key pair and id, the APIv3 key. */
export interface TestKeySet {
  mchid: string
  appid: string
  merchant: { serial: string, privateKey: string, publicKey: string }
  platform: PlatformKey
  apiV3Key: string
}

/** A fresh key set (two RSA 2048 key pairs, generated in parallel: well under a second). */
export async function generateKeySet (opts: { mchid?: string, appid?: string } = {}): Promise<TestKeySet> {
  const [merchant, platform] = await Promise.all([rsaKeyPair(), generatePlatformKey(publicKeyId())])
  return {
    mchid: opts.mchid ?? '1900000109',
    appid: opts.appid ?? 'wxd678efh567hg6787',
    merchant: { serial: merchantSerial(), ...merchant },
    platform,
    apiV3Key: apiV3Key()
  }
}

/** The client config for a key set against a fake (publicKeys: the key set's platform key; override what a test varies). */
export function clientConfig (keys: TestKeySet, apiBase: string, overrides: Partial<WechatPayConfig> = {}): WechatPayConfig {
  return {
    mchid: keys.mchid,
    appid: keys.appid,
    merchantSerial: keys.merchant.serial,
    privateKey: keys.merchant.privateKey,
    apiV3Key: keys.apiV3Key,
    publicKeys: new Map([[keys.platform.keyId, keys.platform.publicKey]]),
    notifyUrl: 'http://127.0.0.1:9/notify',
    apiBase,
    timeoutMs: 5000,
    ...overrides
  }
}

/**
 * Billing's WECHATPAY_* variables for a key set whose WeChat Pay (a fake) is at `apiBase`: what a test or the bench
 * starts billing with. The notify URL is WeChat Pay's to call; a fake delivers wherever a test tells it.
 */
export function merchantEnv (keys: TestKeySet, apiBase: string, notifyUrl = 'https://pay.example.com/api/billing/wechatpay/notify'): Record<string, string> {
  return {
    WECHATPAY_MCHID: keys.mchid,
    WECHATPAY_APPID: keys.appid,
    WECHATPAY_MERCHANT_SERIAL: keys.merchant.serial,
    WECHATPAY_PRIVATE_KEY: keys.merchant.privateKey,
    WECHATPAY_APIV3_KEY: keys.apiV3Key,
    WECHATPAY_PUBLIC_KEY: keys.platform.publicKey,
    WECHATPAY_PUBLIC_KEY_ID: keys.platform.keyId,
    WECHATPAY_NOTIFY_URL: notifyUrl,
    WECHATPAY_API_BASE: apiBase
  }
}

/** A failure for one operation: answer `{code, message}` with a status (e.g. 500 SYSTEM_ERROR), or never answer. */
export type FailMode = 'hang' | { status: number, code?: string, message?: string }

/** Mutable between requests. */
export interface FakeKnobs {
  /** Fail order creation (jsapi and native). */
  create?: FailMode
  query?: FailMode
  close?: FailMode
  /**
   * How answers are signed: `valid` (default); `bad` (a byte of the signature changed); `none` (no Wechatpay-* headers);
   * `foreign-key` (signed by a key under an id the merchant does not know); `stale` (a timestamp 10 minutes old).
   */
  answerSignature?: 'valid' | 'bad' | 'none' | 'foreign-key' | 'stale'
  /** Wait before answering (each request). */
  answerDelayMs?: number
}

export interface RecordedRequest {
  method: string
  url: string
  operation: 'create' | 'query' | 'close' | 'other'
  status: number | 'hung'
  authorization: string | undefined
  body: string
}

export interface Delivery { status: number, body: string }

export interface DeliverOptions extends NotificationOptions {
  /** Post the same notification this many times (WeChat Pay's duplicates), one after the other; default 1. */
  times?: number
  /** Post the copies concurrently instead. */
  parallel?: boolean
  /** Wait this long before the first post (a late callback). */
  delayMs?: number
  /** Where to post (default: the order's notify_url). */
  url?: string
  /** Like WeChat Pay: post again while the answer is not 2xx (or the post fails), up to `attempts` posts `intervalMs` apart. */
  retry?: { attempts: number, intervalMs: number }
}

export interface FakeWechatPay {
  /** The apiBase to configure (`http://127.0.0.1:<port>`). */
  url: string
  engine: WechatPayEngine
  knobs: FakeKnobs
  /** Every request, in arrival order. */
  requests: RecordedRequest[]
  order (outTradeNo: string): StoredOrder | undefined
  /** The payer pays (NOTPAY → SUCCESS); no callback is sent. */
  markPaid (outTradeNo: string, opts?: { payerOpenid?: string, successTime?: string }): StoredOrder
  setState (outTradeNo: string, state: TradeState): void
  /** Builds a callback without sending it (post several in any order to test out-of-order delivery). */
  notification (outTradeNo: string, opts?: NotificationOptions): SignedNotification
  /** Posts a built callback; a connection failure is `{status: 0, body: <error>}`. */
  post (notification: SignedNotification, url: string): Promise<Delivery>
  /** Builds and posts a callback for an order (see DeliverOptions); returns every answer. */
  deliver (outTradeNo: string, opts?: DeliverOptions): Promise<Delivery[]>
  /** markPaid then deliver. */
  pay (outTradeNo: string, opts?: DeliverOptions & { payerOpenid?: string }): Promise<Delivery[]>
  /** Releases hung requests and stops listening. */
  close (): Promise<void>
}

export interface FakeWechatPayOptions {
  /** The merchant(s) it serves; the first key set's platform key signs. */
  keys: TestKeySet | TestKeySet[]
  /** More platform keys it holds (rotation); `currentKeyId` picks the default signer. */
  extraPlatformKeys?: PlatformKey[]
  currentKeyId?: string
  knobs?: FakeKnobs
  now?: () => number
}

const operationOf = (method: string, url: string): RecordedRequest['operation'] => {
  if (method === 'POST' && /^\/v3\/pay\/transactions\/(jsapi|native)$/.test(url)) return 'create'
  if (method === 'POST' && /\/close$/.test(url)) return 'close'
  if (method === 'GET' && url.startsWith('/v3/pay/transactions/out-trade-no/')) return 'query'
  return 'other'
}

/** Starts the fake on 127.0.0.1 and a free port. */
export async function startFakeWechatPay (opts: FakeWechatPayOptions): Promise<FakeWechatPay> {
  const sets = Array.isArray(opts.keys) ? opts.keys : [opts.keys]
  const platformKeys = [...new Map([...sets.map((k) => k.platform), ...(opts.extraPlatformKeys ?? [])].map((k) => [k.keyId, k])).values()]
  if (opts.currentKeyId) platformKeys.sort((a, b) => Number(b.keyId === opts.currentKeyId) - Number(a.keyId === opts.currentKeyId))
  const now = opts.now ?? Date.now
  const engine = new WechatPayEngine({
    platformKeys,
    merchants: sets.map((k) => ({ mchid: k.mchid, appid: k.appid, merchantSerial: k.merchant.serial, merchantPublicKey: k.merchant.publicKey, apiV3Key: k.apiV3Key })),
    now
  })
  const knobs: FakeKnobs = { ...opts.knobs }
  const requests: RecordedRequest[] = []
  const hung = new Set<ServerResponse>()
  let foreignKey: ReturnType<typeof privateKeyOf> | undefined

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      (async () => {
        const method = req.method ?? 'GET'
        const url = req.url ?? '/'
        const body = Buffer.concat(chunks).toString('utf8')
        const operation = operationOf(method, url)
        const record: RecordedRequest = { method, url, operation, status: 0, authorization: req.headers.authorization, body }
        requests.push(record)
        if (knobs.answerDelayMs) await sleep(knobs.answerDelayMs)
        const fail = operation === 'other' ? undefined : knobs[operation]
        if (fail === 'hang') {
          record.status = 'hung'
          hung.add(res)
          res.on('close', () => hung.delete(res))
          return
        }
        const headers: Record<string, string | undefined> = {}
        for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v[0] : v
        const request = { method, url, headers, body }
        // A failing operation changes nothing (but a badly signed request is still refused as such first).
        const answer = engine.authenticate(request) ??
          (fail ? engine.answer(request, fail.status, { code: fail.code ?? 'SYSTEM_ERROR', message: fail.message ?? '系统错误' }) : engine.handle(request))
        const h = { ...answer.headers }
        switch (knobs.answerSignature ?? 'valid') {
          case 'bad': {
            const sig = Buffer.from(h['wechatpay-signature'], 'base64')
            sig[sig.length >> 1] ^= 0x01
            h['wechatpay-signature'] = sig.toString('base64')
            break
          }
          case 'none':
            for (const k of Object.keys(h)) if (k.startsWith('wechatpay-')) delete h[k]
            break
          case 'foreign-key':
            foreignKey ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
            h['wechatpay-serial'] = FOREIGN_KEY_ID
            h['wechatpay-signature'] = sign(buildSignatureMessage(h['wechatpay-timestamp'], h['wechatpay-nonce'], answer.body), foreignKey)
            break
          case 'stale':
            Object.assign(h, engine.signHeaders(answer.body, h['wechatpay-serial'], now() - 600_000))
            break
        }
        record.status = answer.status
        res.writeHead(answer.status, h)
        res.end(answer.body)
      })().catch((err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' })
        res.end(String(err))
      })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  async function post (n: SignedNotification, target: string): Promise<Delivery> {
    try {
      const res = await fetch(target, { method: 'POST', headers: n.headers, body: n.body, signal: AbortSignal.timeout(30_000) })
      return { status: res.status, body: await res.text() }
    } catch (err) {
      return { status: 0, body: String(err) }
    }
  }

  async function deliver (outTradeNo: string, dopts: DeliverOptions = {}): Promise<Delivery[]> {
    const o = engine.order(outTradeNo)
    if (!o) throw new Error(`no order ${outTradeNo}`)
    const target = dopts.url ?? o.notify_url
    const n = engine.notification(outTradeNo, dopts)
    if (dopts.delayMs) await sleep(dopts.delayMs)
    const once = async (): Promise<Delivery[]> => {
      const out: Delivery[] = []
      const attempts = dopts.retry?.attempts ?? 1
      for (let i = 0; i < attempts; i++) {
        if (i > 0) await sleep(dopts.retry!.intervalMs)
        const d = await post(n, target)
        out.push(d)
        if (d.status >= 200 && d.status < 300) break
      }
      return out
    }
    const times = dopts.times ?? 1
    if (dopts.parallel) return (await Promise.all(Array.from({ length: times }, once))).flat()
    const all: Delivery[] = []
    for (let i = 0; i < times; i++) all.push(...await once())
    return all
  }

  return {
    url,
    engine,
    knobs,
    requests,
    order: (outTradeNo) => engine.order(outTradeNo),
    markPaid: (outTradeNo, p) => engine.markPaid(outTradeNo, p),
    setState: (outTradeNo, state) => engine.setState(outTradeNo, state),
    notification: (outTradeNo, n) => engine.notification(outTradeNo, n),
    post,
    deliver,
    async pay (outTradeNo, p = {}) {
      engine.markPaid(outTradeNo, { payerOpenid: p.payerOpenid })
      return await deliver(outTradeNo, p)
    },
    async close () {
      for (const res of hung) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
