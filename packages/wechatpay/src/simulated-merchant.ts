// The development payment simulator (DESIGN §6.2): a merchant and a WeChat Pay that live in one process, with real
// signatures both ways, so billing's code path is the production one; only the network and the payer are simulated.
import { WechatPayEngine, type NotificationOptions } from './engine.ts'
import { createWechatPayClient } from './client.ts'
import { apiV3Key, generatePlatformKey, merchantSerial, rsaKeyPair } from './keys.ts'
import type { SignedNotification, WechatPayClient, WechatPayConfig } from './types.ts'

/** The marker on everything the simulator makes: its merchant number, prepay ids (`wx_simulated…`), code_url tokens. */
export const SIMULATED_LABEL = 'simulated'
/** An address that resolves nowhere (`.invalid`): the simulated client never opens a connection. */
export const SIMULATED_API_BASE = 'https://wechatpay.simulated.invalid'

export interface SimulatedMerchant {
  /** A complete, labelled merchant config (keys generated at creation, mchid `SIMULATED`); `fetch` is in process. */
  config: WechatPayConfig
  /** The same client a real merchant gets, answering from the in-process WeChat Pay. */
  client: WechatPayClient
  /**
   * What WeChat Pay does when the payer pays: marks the order paid and builds its TRANSACTION.SUCCESS callback, signed
   * with the simulated WeChat Pay key and encrypted with the APIv3 key, for billing to feed to its own notify handler
   * (`client.verifyNotification` accepts it). The order may come from another process or a restart: `amountFen`
   * (and `payerOpenid` for JSAPI) describe it then; an order this process created keeps its own amount.
   */
  paidNotification (order: { outTradeNo: string, amountFen: number, description?: string, payerOpenid?: string }, opts?: NotificationOptions): SignedNotification
  /** The in-process WeChat Pay (orders, states) for tests. */
  engine: WechatPayEngine
}

/**
 * Creates the simulator: fresh keys each time (no key is stored anywhere), so a callback it builds verifies only in the
 * process that created it. Orders live in memory: after a restart a query answers ORDER_NOT_EXIST (null) until
 * `paidNotification` is called for the order.
 */
export async function createSimulatedMerchant (opts: { appid?: string, notifyUrl?: string, timeoutMs?: number, now?: () => number } = {}): Promise<SimulatedMerchant> {
  const [merchant, platform] = await Promise.all([rsaKeyPair(), generatePlatformKey()])
  const now = opts.now ?? Date.now
  const base = {
    mchid: 'SIMULATED',
    appid: opts.appid ?? 'wx_simulated_app',
    merchantSerial: merchantSerial(),
    apiV3Key: apiV3Key()
  }
  const engine = new WechatPayEngine({
    platformKeys: [platform],
    merchants: [{ ...base, merchantPublicKey: merchant.publicKey }],
    now,
    label: SIMULATED_LABEL
  })
  const inProcessFetch: typeof fetch = async (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url)
    const headers: Record<string, string> = {}
    new Headers(init?.headers).forEach((v, k) => { headers[k] = v })
    const answer = engine.handle({ method: init?.method ?? 'GET', url: url.pathname + url.search, headers, body: typeof init?.body === 'string' ? init.body : '' })
    return new Response(answer.status === 204 ? null : answer.body, { status: answer.status, headers: answer.headers })
  }
  const config: WechatPayConfig = {
    ...base,
    privateKey: merchant.privateKey,
    publicKeys: new Map([[platform.keyId, platform.publicKey]]),
    notifyUrl: opts.notifyUrl ?? 'http://127.0.0.1/api/billing/wechatpay/notify',
    apiBase: SIMULATED_API_BASE,
    timeoutMs: opts.timeoutMs ?? 5000,
    fetch: inProcessFetch,
    now
  }
  return {
    config,
    client: createWechatPayClient(config),
    engine,
    paidNotification (order, nopts) {
      engine.markPaid(order.outTradeNo, {
        mchid: base.mchid,
        payerOpenid: order.payerOpenid,
        create: {
          mchid: base.mchid,
          appid: base.appid,
          out_trade_no: order.outTradeNo,
          description: order.description ?? 'simulated order',
          amount_total: order.amountFen,
          trade_type: order.payerOpenid ? 'JSAPI' : 'NATIVE',
          payer_openid: order.payerOpenid,
          time_expire: undefined,
          notify_url: config.notifyUrl
        }
      })
      return engine.notification(order.outTradeNo, nopts)
    }
  }
}
