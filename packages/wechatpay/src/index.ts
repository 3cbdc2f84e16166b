// @chat-platform/wechatpay: a WeChat Pay API v3 client on node:crypto and fetch, and the development payment simulator.
export { createWechatPayClient } from './client.ts'
export { WechatPayError, WechatPayNotificationError, type WechatPayErrorKind, type NotificationErrorReason } from './errors.ts'
export { createSimulatedMerchant, SIMULATED_API_BASE, SIMULATED_LABEL, type SimulatedMerchant } from './simulated-merchant.ts'
export {
  TRADE_STATES,
  type CreateJsapiOrderInput,
  type CreateNativeOrderInput,
  type JsapiPayParams,
  type NotificationHeaders,
  type SignedNotification,
  type TradeState,
  type Transaction,
  type WechatPayClient,
  type WechatPayConfig
} from './types.ts'
