// The WeChat Pay API v3 shapes this package speaks: client config, order inputs, the transaction, JSAPI pay parameters.

/** What a merchant configures (DESIGN §6.2: WECHATPAY_* variables). */
export interface WechatPayConfig {
  /** 商户号, e.g. `1900000109`. */
  mchid: string
  /** The app (mini-program / official account) the orders are paid under. */
  appid: string
  /** The serial number of the merchant API certificate whose private key signs requests. */
  merchantSerial: string
  /** The merchant API private key (PKCS#8 or PKCS#1 PEM, RSA 2048). */
  privateKey: string
  /** The APIv3 key: 32 bytes (characters) that decrypt callback resources. */
  apiV3Key: string
  /**
   * WeChat Pay public keys by id (`PUB_KEY_ID_…`), PEM. Several at once for rotation: an answer or callback is checked
   * with the key its `Wechatpay-Serial` names. The first entry is the one requests ask WeChat Pay to sign with.
   */
  publicKeys: Map<string, string>
  /** Where WeChat Pay posts payment callbacks (https, no query string, in production). */
  notifyUrl: string
  /** `https://api.mch.weixin.qq.com` in production. */
  apiBase: string
  /** Per request, connection and answer included. */
  timeoutMs: number
  /** Optional transport (defaults to the global fetch); the simulated merchant passes an in-process one. */
  fetch?: typeof fetch
  /** Optional clock in milliseconds (defaults to Date.now), for the ±5 minute timestamp window. */
  now?: () => number
}

export interface CreateJsapiOrderInput {
  /** The merchant order number (`^[A-Za-z0-9_*-]{6,32}$`). */
  outTradeNo: string
  description: string
  amountFen: number
  payerOpenid: string
  /** RFC 3339 with offset, e.g. `2026-12-04T18:30:00+08:00`. */
  timeExpire: string
}

export interface CreateNativeOrderInput {
  outTradeNo: string
  description: string
  amountFen: number
  timeExpire: string
}

export type TradeState = 'SUCCESS' | 'NOTPAY' | 'CLOSED' | 'REFUND' | 'USERPAYING' | 'PAYERROR' | 'REVOKED'
export const TRADE_STATES: readonly TradeState[] = ['SUCCESS', 'NOTPAY', 'CLOSED', 'REFUND', 'USERPAYING', 'PAYERROR', 'REVOKED']

/** A transaction as the query API and the decrypted callback resource give it (the fields billing reads). */
export interface Transaction {
  appid: string
  mchid: string
  out_trade_no: string
  /** WeChat Pay's own number; absent while NOTPAY. */
  transaction_id?: string
  trade_type?: string
  trade_state: TradeState
  trade_state_desc?: string
  /** RFC 3339; present once paid. */
  success_time?: string
  payer?: { openid?: string }
  /** Present once paid (WeChat Pay documents it as returned when the payment succeeded); always there for SUCCESS. */
  amount?: { total: number, payer_total?: number, currency?: string, payer_currency?: string }
  [field: string]: unknown
}

/** What `wx.requestPayment` takes in the mini-program. */
export interface JsapiPayParams {
  appId: string
  timeStamp: string
  nonceStr: string
  package: string
  signType: 'RSA'
  paySign: string
}

export interface WechatPayClient {
  /** POST /v3/pay/transactions/jsapi. */
  createJsapiOrder (input: CreateJsapiOrderInput): Promise<{ prepayId: string }>
  /** POST /v3/pay/transactions/native. */
  createNativeOrder (input: CreateNativeOrderInput): Promise<{ codeUrl: string }>
  /** The signed parameters for `wx.requestPayment` (paySign: RSA-SHA256 over `appId\ntimeStamp\nnonceStr\npackage\n`). */
  jsapiPayParams (prepayId: string): JsapiPayParams
  /** GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…; `null` when WeChat Pay answers ORDER_NOT_EXIST. */
  queryOrder (outTradeNo: string): Promise<Transaction | null>
  /** POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close (204). */
  closeOrder (outTradeNo: string): Promise<void>
  /**
   * Checks a payment callback (signature over the raw body with the key its Wechatpay-Serial names, timestamp within
   * ±5 minutes), decrypts its resource and returns the transaction; throws WechatPayNotificationError saying why not.
   */
  verifyNotification (headers: NotificationHeaders, rawBody: Buffer | string): Transaction
}

/** Request headers as node/Fastify give them (names lower-case). */
export type NotificationHeaders = Record<string, string | string[] | undefined>

/** A callback ready to post: the headers WeChat Pay sends and the exact body bytes they sign. */
export interface SignedNotification {
  headers: Record<string, string>
  body: Buffer
}
