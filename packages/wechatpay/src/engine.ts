// WeChat Pay's side of API v3, in memory: verifies merchant request signatures, keeps orders, signs answers and callbacks.
// Shared by the development simulator (simulated-merchant.ts, in process) and the test fake (testing/fake-server.ts, on HTTP).
import { generateKeyPairSync, randomBytes, randomInt, type KeyObject } from 'node:crypto'
import { buildRequestMessage, buildSignatureMessage, encryptResource, nonce, parseAuthorization, privateKeyOf, publicKeyOf, sign, TIMESTAMP_WINDOW_SECONDS, unixSeconds, verify } from './crypto.ts'
import type { SignedNotification, TradeState, Transaction } from './types.ts'

/** A WeChat Pay platform key pair (public-key mode): `keyId` is what Wechatpay-Serial carries, `PUB_KEY_ID_…`. */
export interface PlatformKey {
  keyId: string
  privateKey: string
  publicKey: string
}

/** What WeChat Pay knows of a merchant: its number, app, API certificate serial and public key, APIv3 key. */
export interface MerchantRegistration {
  mchid: string
  appid: string
  merchantSerial: string
  merchantPublicKey: string
  apiV3Key: string
}

/** An order as the engine keeps it. */
export interface StoredOrder {
  mchid: string
  appid: string
  out_trade_no: string
  description: string
  amount_total: number
  trade_type: 'JSAPI' | 'NATIVE'
  payer_openid: string | undefined
  time_expire: string | undefined
  notify_url: string
  trade_state: TradeState
  transaction_id: string | undefined
  success_time: string | undefined
  prepay_id: string | undefined
  code_url: string | undefined
  /** The request body the order was created with (a retry with the same body gets the same answer). */
  created_with: string
}

export interface EngineRequest {
  method: string
  /** Path and query, exactly as signed. */
  url: string
  headers: Record<string, string | undefined>
  body: string
}

export interface EngineAnswer {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * How to build a callback (`notification`): each override makes a different lie or fault, so tests can check that it
 * is refused or not credited. Signature faults: `tamper`. Content faults (correctly signed and encrypted): the rest.
 */
export interface NotificationOptions {
  /**
   * `signature`: one signature byte changed; `timestamp`: Wechatpay-Timestamp 10 minutes old (signed as such);
   * `unknown-key`: signed by a key whose id the merchant does not know; `ciphertext`: the resource encrypted with another
   * APIv3 key (signed correctly); `body`: the body changed after signing.
   */
  tamper?: 'signature' | 'timestamp' | 'unknown-key' | 'ciphertext' | 'body'
  amountFen?: number
  mchid?: string
  appid?: string
  outTradeNo?: string
  eventType?: string
  tradeState?: TradeState
  /** Sign with this platform key id (default: the current key). */
  keyId?: string
  /** Notification id (default: random `EV-…`; the same id twice is one delivery seen twice). */
  id?: string
}

/** RFC 3339 in Beijing time, as WeChat Pay writes times (`2026-12-04T18:30:00+08:00`). */
export function beijingTime (ms: number): string {
  return new Date(ms + 8 * 3600_000).toISOString().replace(/\.\d{3}Z$/, '+08:00')
}

/** The key id `tamper: 'unknown-key'` signs under: one no merchant configures. */
export const FOREIGN_KEY_ID = 'PUB_KEY_ID_0000000000000000000000FOREIGN'
const OUT_TRADE_NO = /^[A-Za-z0-9_*|-]{6,32}$/
const ORDER_PATH = /^\/v3\/pay\/transactions\/out-trade-no\/([^/?]+)(\/close)?(?:\?(.*))?$/

export interface EngineOptions {
  /** Platform keys; the first signs unless a request's Wechatpay-Serial asks for another one it holds. */
  platformKeys: PlatformKey[]
  merchants: MerchantRegistration[]
  now?: () => number
  /** Prefix of prepay ids and code_url tokens: `simulated` makes them unmistakable in development. */
  label?: string
}

export class WechatPayEngine {
  readonly orders = new Map<string, StoredOrder>()
  readonly platformKeys: PlatformKey[]
  private readonly keys = new Map<string, { priv: KeyObject, pub: KeyObject }>()
  private readonly merchants = new Map<string, MerchantRegistration & { pub: KeyObject }>()
  private readonly now: () => number
  private readonly label: string
  private seq = 0
  private foreignKey: KeyObject | undefined

  constructor (opts: EngineOptions) {
    if (opts.platformKeys.length === 0) throw new TypeError('at least one platform key')
    this.platformKeys = [...opts.platformKeys]
    for (const k of opts.platformKeys) this.keys.set(k.keyId, { priv: privateKeyOf(k.privateKey), pub: publicKeyOf(k.publicKey) })
    for (const m of opts.merchants) this.merchants.set(m.mchid, { ...m, pub: publicKeyOf(m.merchantPublicKey) })
    this.now = opts.now ?? Date.now
    this.label = opts.label ?? 'fake'
  }

  /** Adds a platform key (rotation); `current` makes it the one answers and callbacks are signed with by default. */
  addPlatformKey (key: PlatformKey, current = false): void {
    this.keys.set(key.keyId, { priv: privateKeyOf(key.privateKey), pub: publicKeyOf(key.publicKey) })
    if (current) this.platformKeys.unshift(key)
    else this.platformKeys.push(key)
  }

  get currentKeyId (): string { return this.platformKeys[0].keyId }

  order (outTradeNo: string, mchid?: string): StoredOrder | undefined {
    if (mchid) return this.orders.get(`${mchid}/${outTradeNo}`)
    for (const o of this.orders.values()) if (o.out_trade_no === outTradeNo) return o
    return undefined
  }

  /** The transaction the query API answers and the callback encrypts. */
  transaction (o: StoredOrder): Transaction {
    const paid = o.trade_state === 'SUCCESS' || o.trade_state === 'REFUND'
    return {
      appid: o.appid,
      mchid: o.mchid,
      out_trade_no: o.out_trade_no,
      ...(o.transaction_id ? { transaction_id: o.transaction_id } : {}),
      trade_type: o.trade_type,
      trade_state: o.trade_state,
      trade_state_desc: DESC[o.trade_state],
      ...(paid ? { bank_type: 'OTHERS', attach: '', success_time: o.success_time } : {}),
      ...(paid ? { payer: { openid: o.payer_openid ?? `o${this.label}-native-payer` } } : {}),
      amount: paid ? { total: o.amount_total, payer_total: o.amount_total, currency: 'CNY', payer_currency: 'CNY' } : { total: o.amount_total, currency: 'CNY', payer_currency: 'CNY' }
    }
  }

  /**
   * Records that the payer paid (what the WeChat app does): NOTPAY or USERPAYING → SUCCESS. An order unknown here is
   * created first from `create` (the simulator's orders may come from another process). A closed order cannot be paid.
   */
  markPaid (outTradeNo: string, opts: { mchid?: string, payerOpenid?: string, successTime?: string, create?: Omit<StoredOrder, 'trade_state' | 'transaction_id' | 'success_time' | 'prepay_id' | 'code_url' | 'created_with'> } = {}): StoredOrder {
    let o = this.order(outTradeNo, opts.mchid)
    if (!o && opts.create) {
      o = { ...opts.create, trade_state: 'NOTPAY', transaction_id: undefined, success_time: undefined, prepay_id: undefined, code_url: undefined, created_with: '' }
      this.orders.set(`${o.mchid}/${o.out_trade_no}`, o)
    }
    if (!o) throw new Error(`no order ${outTradeNo}`)
    if (o.trade_state === 'SUCCESS') return o
    if (o.trade_state !== 'NOTPAY' && o.trade_state !== 'USERPAYING') throw new Error(`order ${outTradeNo} is ${o.trade_state} and cannot be paid`)
    o.trade_state = 'SUCCESS'
    o.transaction_id = `4200${String(++this.seq).padStart(6, '0')}${String(randomInt(1e9)).padStart(9, '0')}${String(randomInt(1e9)).padStart(9, '0')}`
    o.success_time = opts.successTime ?? beijingTime(this.now())
    if (opts.payerOpenid) o.payer_openid = opts.payerOpenid
    return o
  }

  /** Sets an order's state directly (REFUND, PAYERROR, USERPAYING… for tests of states billing must not credit). */
  setState (outTradeNo: string, state: TradeState): void {
    const o = this.order(outTradeNo)
    if (!o) throw new Error(`no order ${outTradeNo}`)
    o.trade_state = state
  }

  /** Signature headers for a body, signed with a platform key. */
  signHeaders (body: string | Buffer, keyId = this.currentKeyId, timestampMs = this.now()): Record<string, string> {
    const key = this.keys.get(keyId)
    if (!key) throw new Error(`no platform key ${keyId}`)
    const ts = unixSeconds(timestampMs)
    const n = nonce()
    return {
      'wechatpay-nonce': n,
      'wechatpay-signature': sign(buildSignatureMessage(ts, n, body), key.priv),
      'wechatpay-timestamp': ts,
      'wechatpay-serial': keyId
    }
  }

  /** A payment callback for an order (by default a genuine TRANSACTION.SUCCESS of a paid order), signed and encrypted. */
  notification (outTradeNo: string, opts: NotificationOptions = {}): SignedNotification {
    const o = this.order(outTradeNo)
    if (!o) throw new Error(`no order ${outTradeNo}`)
    const merchant = this.merchants.get(o.mchid)
    if (!merchant) throw new Error(`no merchant ${o.mchid}`)
    const tx = this.transaction(o)
    if (opts.tradeState) tx.trade_state = opts.tradeState
    if (opts.amountFen !== undefined) tx.amount = { ...tx.amount, total: opts.amountFen, payer_total: opts.amountFen }
    if (opts.mchid) tx.mchid = opts.mchid
    if (opts.appid) tx.appid = opts.appid
    if (opts.outTradeNo) tx.out_trade_no = opts.outTradeNo
    const apiV3Key = opts.tamper === 'ciphertext' ? randomBytes(16).toString('hex') : merchant.apiV3Key
    const now = this.now()
    const body = Buffer.from(JSON.stringify({
      id: opts.id ?? `EV-${randomBytes(10).toString('hex')}`,
      create_time: beijingTime(now),
      resource_type: 'encrypt-resource',
      event_type: opts.eventType ?? 'TRANSACTION.SUCCESS',
      summary: '支付成功',
      resource: encryptResource(JSON.stringify(tx), apiV3Key)
    }))
    const headers = this.signHeaders(body, opts.keyId ?? this.currentKeyId, opts.tamper === 'timestamp' ? now - 2 * TIMESTAMP_WINDOW_SECONDS * 1000 : now)
    if (opts.tamper === 'unknown-key') {
      // Signed correctly, but by a key (and id) the merchant was never given.
      const foreign = this.foreignKey ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
      const ts = headers['wechatpay-timestamp']
      headers['wechatpay-serial'] = FOREIGN_KEY_ID
      headers['wechatpay-signature'] = sign(buildSignatureMessage(ts, headers['wechatpay-nonce'], body), foreign)
    }
    if (opts.tamper === 'signature') {
      const sig = Buffer.from(headers['wechatpay-signature'], 'base64')
      sig[sig.length >> 1] ^= 0x01
      headers['wechatpay-signature'] = sig.toString('base64')
    }
    const sent = opts.tamper === 'body' ? Buffer.from(body.toString('utf8').replace('"TRANSACTION.SUCCESS"', '"TRANSACTION.SUCCESS" ')) : body
    return { headers: { 'content-type': 'application/json', ...headers, 'request-id': randomBytes(16).toString('hex') }, body: sent }
  }

  /** A signed answer (signed with the key the request's Wechatpay-Serial asks for, when this server holds it). */
  answer (req: Pick<EngineRequest, 'headers'>, status: number, payload?: unknown): EngineAnswer {
    const asked = req.headers['wechatpay-serial']
    const keyId = asked && this.keys.has(asked) ? asked : this.currentKeyId
    const body = payload === undefined ? '' : JSON.stringify(payload)
    return { status, headers: { ...(body ? { 'content-type': 'application/json' } : {}), 'request-id': randomBytes(16).toString('hex'), ...this.signHeaders(body, keyId) }, body }
  }

  /** Checks a request's Authorization (merchant, certificate serial, timestamp window, signature): the refusal, or null. */
  authenticate (req: EngineRequest): EngineAnswer | null {
    const error = (status: number, code: string, message: string) => this.answer(req, status, { code, message })
    const auth = parseAuthorization(req.headers.authorization)
    if (!auth) return error(401, 'SIGN_ERROR', 'Authorization 头缺失或格式错误 (WECHATPAY2-SHA256-RSA2048 expected)')
    const merchant = this.merchants.get(auth.mchid)
    if (!merchant) return error(401, 'SIGN_ERROR', `商户号 ${auth.mchid} 不存在`)
    if (auth.serial_no !== merchant.merchantSerial) return error(401, 'SIGN_ERROR', `证书序列号 ${auth.serial_no} 不是商户的 API 证书`)
    if (!/^\d+$/.test(auth.timestamp) || Math.abs(this.now() / 1000 - Number(auth.timestamp)) > TIMESTAMP_WINDOW_SECONDS) return error(401, 'SIGN_ERROR', '签名时间戳已过期')
    if (!verify(buildRequestMessage(req.method, req.url, auth.timestamp, auth.nonce_str, req.body), auth.signature, merchant.pub)) {
      return error(401, 'SIGN_ERROR', '签名错误')
    }
    const asked = req.headers['wechatpay-serial']
    if (asked && !this.keys.has(asked)) return error(400, 'INVALID_REQUEST', `Wechatpay-Serial ${asked} 不是有效的微信支付公钥ID`)
    return null
  }

  /** Answers one merchant request the way api.mch.weixin.qq.com does. */
  handle (req: EngineRequest): EngineAnswer {
    const refused = this.authenticate(req)
    if (refused) return refused
    const auth = parseAuthorization(req.headers.authorization)!
    const merchant = this.merchants.get(auth.mchid)!
    const answer = (status: number, payload?: unknown) => this.answer(req, status, payload)
    const error = (status: number, code: string, message: string) => answer(status, { code, message })

    if (req.method === 'POST' && (req.url === '/v3/pay/transactions/jsapi' || req.url === '/v3/pay/transactions/native')) {
      const kind = req.url.endsWith('jsapi') ? 'JSAPI' : 'NATIVE'
      let b: Record<string, any>
      try { b = JSON.parse(req.body) } catch { return error(400, 'PARAM_ERROR', '请求体不是 JSON') }
      if (typeof b !== 'object' || b === null) return error(400, 'PARAM_ERROR', '请求体不是 JSON 对象')
      if (b.mchid !== auth.mchid) return error(400, 'PARAM_ERROR', 'mchid 与请求头中的商户号不一致')
      if (b.appid !== merchant.appid) return error(400, 'APPID_MCHID_NOT_MATCH', 'appid 和 mch_id 不匹配')
      if (typeof b.out_trade_no !== 'string' || !OUT_TRADE_NO.test(b.out_trade_no)) return error(400, 'PARAM_ERROR', 'out_trade_no 格式错误')
      if (typeof b.description !== 'string' || b.description.length === 0 || b.description.length > 127) return error(400, 'PARAM_ERROR', 'description 长度应在 1-127')
      if (!Number.isInteger(b.amount?.total) || b.amount.total < 1) return error(400, 'PARAM_ERROR', 'amount.total 应为正整数 (分)')
      if (typeof b.notify_url !== 'string' || !/^https?:\/\/[^?#]+$/.test(b.notify_url)) return error(400, 'PARAM_ERROR', 'notify_url 格式错误')
      if (b.time_expire !== undefined && (typeof b.time_expire !== 'string' || Number.isNaN(Date.parse(b.time_expire)) || !/[+-]\d\d:\d\d$/.test(b.time_expire))) {
        return error(400, 'PARAM_ERROR', 'time_expire 应为 rfc3339 格式 (yyyy-MM-DDTHH:mm:ss+TIMEZONE)')
      }
      if (kind === 'JSAPI' && (typeof b.payer?.openid !== 'string' || b.payer.openid === '')) return error(400, 'PARAM_ERROR', 'JSAPI 下单须提供 payer.openid')
      const existing = this.orders.get(`${auth.mchid}/${b.out_trade_no}`)
      if (existing) {
        if (existing.trade_state === 'SUCCESS' || existing.trade_state === 'REFUND') return error(400, 'ORDERPAID', '该订单已支付')
        if (existing.trade_state === 'CLOSED') return error(400, 'ORDER_CLOSED', '该订单已关闭')
        if (existing.created_with !== sameOrder(kind, b)) return error(400, 'INVALID_REQUEST', '201 商户订单号重复')
        return answer(200, kind === 'JSAPI' ? { prepay_id: existing.prepay_id } : { code_url: existing.code_url })
      }
      const token = `${this.label}${randomBytes(12).toString('hex')}`
      const o: StoredOrder = {
        mchid: auth.mchid,
        appid: b.appid,
        out_trade_no: b.out_trade_no,
        description: b.description,
        amount_total: b.amount.total,
        trade_type: kind,
        payer_openid: kind === 'JSAPI' ? b.payer.openid : undefined,
        time_expire: b.time_expire,
        notify_url: b.notify_url,
        trade_state: 'NOTPAY',
        transaction_id: undefined,
        success_time: undefined,
        prepay_id: kind === 'JSAPI' ? `wx_${token}` : undefined,
        code_url: kind === 'NATIVE' ? `weixin://wxpay/bizpayurl?pr=${token}` : undefined,
        created_with: sameOrder(kind, b)
      }
      this.orders.set(`${o.mchid}/${o.out_trade_no}`, o)
      return answer(200, kind === 'JSAPI' ? { prepay_id: o.prepay_id } : { code_url: o.code_url })
    }

    const m = ORDER_PATH.exec(req.url)
    if (m) {
      const outTradeNo = decodeURIComponent(m[1])
      const o = this.orders.get(`${auth.mchid}/${outTradeNo}`)
      if (req.method === 'GET' && !m[2]) {
        if (new URLSearchParams(m[3] ?? '').get('mchid') !== auth.mchid) return error(400, 'PARAM_ERROR', 'mchid 与请求头中的商户号不一致')
        if (!o) return error(404, 'ORDER_NOT_EXIST', '订单不存在')
        // WeChat Pay answers amount only once the order is paid (选填: 当支付成功时返回该字段).
        const { amount, ...unpaid } = this.transaction(o)
        return answer(200, o.trade_state === 'SUCCESS' || o.trade_state === 'REFUND' ? { ...unpaid, amount } : unpaid)
      }
      if (req.method === 'POST' && m[2] && !m[3]) {
        let b: Record<string, unknown>
        try { b = JSON.parse(req.body) } catch { return error(400, 'PARAM_ERROR', '请求体不是 JSON') }
        if (b?.mchid !== auth.mchid) return error(400, 'PARAM_ERROR', 'mchid 与请求头中的商户号不一致')
        if (!o) return error(404, 'ORDER_NOT_EXIST', '订单不存在')
        if (o.trade_state === 'SUCCESS' || o.trade_state === 'REFUND') return error(400, 'ORDERPAID', '订单已支付，不能关闭')
        o.trade_state = 'CLOSED'
        return answer(204)
      }
    }
    return error(404, 'NOT_FOUND', `${req.method} ${req.url.split('?')[0]} 不存在`)
  }
}

/** What must be equal for a repeated create to be the same order (WeChat Pay then answers it again). */
const sameOrder = (kind: string, b: Record<string, any>) => JSON.stringify([kind, b.appid, b.description, b.amount.total, b.payer?.openid ?? null, b.notify_url])

const DESC: Record<TradeState, string> = {
  SUCCESS: '支付成功',
  NOTPAY: '订单未支付',
  CLOSED: '订单已关闭',
  REFUND: '转入退款',
  USERPAYING: '用户支付中',
  PAYERROR: '支付失败',
  REVOKED: '已撤销'
}
