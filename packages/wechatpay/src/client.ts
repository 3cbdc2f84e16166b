// The WeChat Pay API v3 client: signed requests, verified answers, JSAPI pay parameters, callback verification.
import type { KeyObject } from 'node:crypto'
import { buildAuthorization, buildSignatureMessage, decryptResource, nonce, privateKeyOf, publicKeyOf, sign, TIMESTAMP_WINDOW_SECONDS, unixSeconds, verify } from './crypto.ts'
import { WechatPayError, WechatPayNotificationError } from './errors.ts'
import { TRADE_STATES, type CreateJsapiOrderInput, type CreateNativeOrderInput, type JsapiPayParams, type NotificationHeaders, type Transaction, type WechatPayClient, type WechatPayConfig } from './types.ts'

const USER_AGENT = 'chat-platform-wechatpay/0.1 (node)'

/** Checks the parts of the config a typo breaks (so a bad WECHATPAY_* variable fails at boot, not at the first order). */
function checkConfig (cfg: WechatPayConfig): void {
  for (const name of ['mchid', 'appid', 'merchantSerial', 'notifyUrl', 'apiBase'] as const) {
    if (typeof cfg[name] !== 'string' || cfg[name] === '') throw new TypeError(`wechatpay: ${name} is required`)
  }
  if (Buffer.byteLength(cfg.apiV3Key ?? '', 'utf8') !== 32) throw new TypeError('wechatpay: apiV3Key must be 32 bytes')
  if (!(cfg.publicKeys instanceof Map) || cfg.publicKeys.size === 0) throw new TypeError('wechatpay: at least one WeChat Pay public key is required')
  if (!Number.isInteger(cfg.timeoutMs) || cfg.timeoutMs <= 0) throw new TypeError('wechatpay: timeoutMs must be a positive integer')
}

/** A header by its lower-case name, whatever the case of the caller's keys (node gives lower case; a plain object may not). */
const header = (headers: NotificationHeaders, name: string): string | undefined => {
  let v = headers[name]
  if (v === undefined) {
    const key = Object.keys(headers).find((k) => k.toLowerCase() === name)
    v = key === undefined ? undefined : headers[key]
  }
  return Array.isArray(v) ? v[0] : v
}

/**
 * Whether a decrypted or queried transaction carries the fields billing relies on, with their types. WeChat Pay
 * documents `amount` as returned only once the order is paid (选填: 当支付成功时返回该字段), so an unpaid answer
 * without it is a transaction; a SUCCESS needs it (its total is what the order is matched against).
 */
function isTransaction (v: unknown): v is Transaction {
  if (typeof v !== 'object' || v === null) return false
  const t = v as Record<string, unknown>
  const amount = t.amount as Record<string, unknown> | undefined
  const amountOk = amount === undefined ? t.trade_state !== 'SUCCESS' : typeof amount === 'object' && amount !== null && Number.isInteger(amount.total)
  return typeof t.appid === 'string' && typeof t.mchid === 'string' && typeof t.out_trade_no === 'string' &&
    typeof t.trade_state === 'string' && (TRADE_STATES as readonly string[]).includes(t.trade_state) &&
    (t.transaction_id === undefined || typeof t.transaction_id === 'string') &&
    (t.success_time === undefined || typeof t.success_time === 'string') &&
    amountOk
}

/** Builds a client for one merchant; the keys are parsed once here (a bad PEM throws now). */
export function createWechatPayClient (cfg: WechatPayConfig): WechatPayClient {
  checkConfig(cfg)
  const privateKey = privateKeyOf(cfg.privateKey)
  const publicKeys = new Map<string, KeyObject>([...cfg.publicKeys].map(([id, pem]) => [id, publicKeyOf(pem)]))
  const preferredKeyId = [...publicKeys.keys()][0]
  const now = cfg.now ?? Date.now
  const doFetch = cfg.fetch ?? fetch
  const base = cfg.apiBase.replace(/\/+$/, '')

  /** Checks a signed timestamp/nonce/serial/signature over a body; returns the reason it fails, or null. */
  function checkSignature (get: (name: string) => string | undefined, body: Buffer): { reason: 'missing_headers' | 'unknown_key' | 'stale_timestamp' | 'bad_signature', detail: string } | null {
    const signature = get('wechatpay-signature')
    const timestamp = get('wechatpay-timestamp')
    const nonceValue = get('wechatpay-nonce')
    const serial = get('wechatpay-serial')
    if (!signature || !timestamp || !nonceValue || !serial || !/^\d{1,12}$/.test(timestamp)) {
      return { reason: 'missing_headers', detail: 'Wechatpay-Signature, -Timestamp, -Nonce and -Serial are required' }
    }
    const key = publicKeys.get(serial)
    if (!key) return { reason: 'unknown_key', detail: `no WeChat Pay public key with id ${serial} is configured` }
    if (Math.abs(now() / 1000 - Number(timestamp)) > TIMESTAMP_WINDOW_SECONDS) {
      return { reason: 'stale_timestamp', detail: `Wechatpay-Timestamp ${timestamp} is more than ${TIMESTAMP_WINDOW_SECONDS} s from now` }
    }
    if (!verify(buildSignatureMessage(timestamp, nonceValue, body), signature, key)) {
      return { reason: 'bad_signature', detail: `the signature does not verify with public key ${serial}` }
    }
    return null
  }

  /** One signed call; returns the verified answer's status and parsed body (undefined for an empty one). */
  async function call (method: 'GET' | 'POST', path: string, payload?: unknown, opts: { notFoundIsNull?: boolean } = {}): Promise<{ status: number, body: unknown }> {
    const body = payload === undefined ? '' : JSON.stringify(payload)
    const authorization = buildAuthorization({ mchid: cfg.mchid, serial: cfg.merchantSerial, privateKey, method, url: path, body, timestamp: unixSeconds(now()), nonce: nonce() })
    const headers: Record<string, string> = {
      accept: 'application/json',
      authorization,
      'user-agent': USER_AGENT,
      // Public-key mode: ask WeChat Pay to sign its answer with this key (it answers with the id in Wechatpay-Serial).
      'wechatpay-serial': preferredKeyId
    }
    if (payload !== undefined) headers['content-type'] = 'application/json'
    const signal = AbortSignal.timeout(cfg.timeoutMs)
    let res: Response
    let raw: Buffer
    try {
      res = await doFetch(base + path, { method, headers, body: payload === undefined ? undefined : body, signal })
      raw = Buffer.from(await res.arrayBuffer())
    } catch (err) {
      if (signal.aborted) throw new WechatPayError('timeout', `WeChat Pay did not answer ${method} ${path} within ${cfg.timeoutMs} ms`, { cause: err })
      throw new WechatPayError('network', `WeChat Pay could not be reached for ${method} ${path}: ${(err as Error).message}`, { cause: err })
    }
    const status = res.status
    const problem = checkSignature((name) => res.headers.get(name) ?? undefined, raw)
    const ok = status >= 200 && status < 300
    let parsed: unknown
    if (raw.length > 0) {
      try { parsed = JSON.parse(raw.toString('utf8')) } catch { parsed = undefined }
    }
    const errorCode = !ok && typeof (parsed as { code?: unknown })?.code === 'string' ? (parsed as { code: string }).code : undefined
    // A result (2xx, or the ORDER_NOT_EXIST that becomes null) is trusted only when signed. An unsigned error answer
    // still fails the call (it cannot make anything happen), so it surfaces as the error it says it is.
    const yieldsResult = ok || (opts.notFoundIsNull === true && status === 404 && errorCode === 'ORDER_NOT_EXIST')
    if (problem && (yieldsResult || problem.reason !== 'missing_headers')) {
      throw new WechatPayError('answer_signature', `WeChat Pay's answer to ${method} ${path} (${status}) is not trusted: ${problem.detail}`, { status, code: errorCode })
    }
    if (!ok) {
      if (yieldsResult) return { status, body: null }
      const message = typeof (parsed as { message?: unknown })?.message === 'string' ? (parsed as { message: string }).message : raw.toString('utf8').slice(0, 200)
      throw new WechatPayError('api', `WeChat Pay answered ${method} ${path} with ${status} ${errorCode ?? ''}: ${message}`, { status, code: errorCode })
    }
    if (raw.length > 0 && parsed === undefined) throw new WechatPayError('answer_malformed', `WeChat Pay's answer to ${method} ${path} is not JSON`, { status })
    return { status, body: parsed }
  }

  const orderBody = (input: CreateNativeOrderInput) => ({
    appid: cfg.appid,
    mchid: cfg.mchid,
    description: input.description,
    out_trade_no: input.outTradeNo,
    time_expire: input.timeExpire,
    notify_url: cfg.notifyUrl,
    amount: { total: input.amountFen, currency: 'CNY' }
  })
  const orderPath = (outTradeNo: string) => `/v3/pay/transactions/out-trade-no/${encodeURIComponent(outTradeNo)}`

  return {
    async createJsapiOrder (input: CreateJsapiOrderInput) {
      const { body } = await call('POST', '/v3/pay/transactions/jsapi', { ...orderBody(input), payer: { openid: input.payerOpenid } })
      const prepayId = (body as { prepay_id?: unknown })?.prepay_id
      if (typeof prepayId !== 'string' || prepayId === '') throw new WechatPayError('answer_malformed', 'WeChat Pay answered the JSAPI order without a prepay_id')
      return { prepayId }
    },

    async createNativeOrder (input: CreateNativeOrderInput) {
      const { body } = await call('POST', '/v3/pay/transactions/native', orderBody(input))
      const codeUrl = (body as { code_url?: unknown })?.code_url
      if (typeof codeUrl !== 'string' || codeUrl === '') throw new WechatPayError('answer_malformed', 'WeChat Pay answered the Native order without a code_url')
      return { codeUrl }
    },

    jsapiPayParams (prepayId: string): JsapiPayParams {
      const timeStamp = unixSeconds(now())
      const nonceStr = nonce()
      const pkg = `prepay_id=${prepayId}`
      const paySign = sign(`${cfg.appid}\n${timeStamp}\n${nonceStr}\n${pkg}\n`, privateKey)
      return { appId: cfg.appid, timeStamp, nonceStr, package: pkg, signType: 'RSA', paySign }
    },

    async queryOrder (outTradeNo: string) {
      const { body } = await call('GET', `${orderPath(outTradeNo)}?mchid=${encodeURIComponent(cfg.mchid)}`, undefined, { notFoundIsNull: true })
      if (body === null) return null
      if (!isTransaction(body)) throw new WechatPayError('answer_malformed', `WeChat Pay's answer to the query of ${outTradeNo} is not a transaction`)
      if (body.out_trade_no !== outTradeNo) throw new WechatPayError('answer_malformed', `WeChat Pay answered the query of ${outTradeNo} with order ${body.out_trade_no}`)
      return body
    },

    async closeOrder (outTradeNo: string) {
      await call('POST', `${orderPath(outTradeNo)}/close`, { mchid: cfg.mchid })
    },

    verifyNotification (headers: NotificationHeaders, rawBody: Buffer | string): Transaction {
      const body = Buffer.isBuffer(rawBody) ? rawBody : Buffer.from(rawBody, 'utf8')
      const problem = checkSignature((name) => header(headers, name), body)
      if (problem) throw new WechatPayNotificationError(problem.reason, problem.detail)
      let notification: { event_type?: unknown, resource?: Record<string, unknown> }
      try { notification = JSON.parse(body.toString('utf8')) } catch (err) {
        throw new WechatPayNotificationError('malformed', 'the callback body is not JSON', { cause: err })
      }
      const resource = notification?.resource
      if (typeof resource !== 'object' || resource === null || typeof resource.ciphertext !== 'string' || typeof resource.nonce !== 'string' ||
        (resource.associated_data !== undefined && typeof resource.associated_data !== 'string')) {
        throw new WechatPayNotificationError('malformed', 'the callback carries no encrypted resource')
      }
      if (resource.algorithm !== 'AEAD_AES_256_GCM') throw new WechatPayNotificationError('malformed', `unsupported resource algorithm ${String(resource.algorithm)}`)
      let plaintext: string
      try {
        plaintext = decryptResource(resource as { ciphertext: string, nonce: string, associated_data?: string }, cfg.apiV3Key)
      } catch (err) {
        throw new WechatPayNotificationError('decrypt_failed', 'the resource does not decrypt with the APIv3 key', { cause: err })
      }
      const eventType = typeof notification.event_type === 'string' ? notification.event_type : undefined
      let transaction: unknown
      try { transaction = JSON.parse(plaintext) } catch (err) {
        throw new WechatPayNotificationError('malformed', 'the decrypted resource is not JSON', { cause: err })
      }
      // Genuine (signed, decrypted) but not a payment: another event's resource (a refund's) is no transaction, and
      // refusing it would only make WeChat Pay deliver it again for a day.
      if (eventType !== 'TRANSACTION.SUCCESS') {
        throw new WechatPayNotificationError('not_success', `the notification is ${eventType ?? 'without event_type'}, not TRANSACTION.SUCCESS`, { eventType })
      }
      if (!isTransaction(transaction)) throw new WechatPayNotificationError('malformed', 'the decrypted resource is not a transaction')
      if (transaction.trade_state !== 'SUCCESS') {
        throw new WechatPayNotificationError('not_success', `the notification is ${eventType ?? 'without event_type'} (trade_state ${transaction.trade_state}), not TRANSACTION.SUCCESS`, { eventType })
      }
      return transaction
    }
  }
}
