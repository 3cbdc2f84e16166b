// Which WeChat Pay billing talks to: the configured merchant, the labelled simulator (unconfigured, outside
// production), or none (unconfigured in production: ordering answers 503); and where payers' openids come from.
import { authInternal } from '@chat-platform/platform'
import { createSimulatedMerchant, createWechatPayClient } from '@chat-platform/wechatpay'
import type { OpenidLookup, PaymentProvider } from './orders.ts'
import type { PaymentsConfig } from './config.ts'

/** WeChat Pay answers in well under a second; a stuck call must not hold an order's transaction for long. */
const WECHATPAY_TIMEOUT_MS = 10_000

export async function createPaymentProvider (config: PaymentsConfig): Promise<PaymentProvider | null> {
  if (config.mode === 'unavailable') return null
  if (config.mode === 'wechatpay') {
    const m = config.merchant!
    const client = createWechatPayClient({
      mchid: m.mchid,
      appid: m.appid,
      merchantSerial: m.merchantSerial,
      privateKey: m.privateKey,
      apiV3Key: m.apiV3Key,
      publicKeys: new Map(m.publicKeys.map((k) => [k.id, k.pem])),
      notifyUrl: m.notifyUrl,
      apiBase: m.apiBase,
      timeoutMs: WECHATPAY_TIMEOUT_MS
    })
    return { client, simulated: false, mchid: m.mchid, appid: m.appid }
  }
  const sim = await createSimulatedMerchant({ appid: config.appid })
  return {
    client: sim.client,
    simulated: true,
    mchid: sim.config.mchid,
    appid: sim.config.appid,
    paidNotification: (order) => sim.paidNotification({ outTradeNo: order.order_no, amountFen: order.amount_fen, description: order.package_id })
  }
}

/** The payer's openid in `appid`, from auth (GET /internal/users/:id/wechat-openid?appid=); null when it has none. */
export function authOpenids (authUrl: string): OpenidLookup {
  const auth = authInternal(authUrl)
  return async (userId, appid, requestId) => {
    const found = await auth.wechatOpenid(userId, appid, { requestId })
    return found?.openid ?? null
  }
}
