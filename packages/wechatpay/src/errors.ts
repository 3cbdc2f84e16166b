// The typed errors of the WeChat Pay client: a failed call (WechatPayError) and a refused callback (WechatPayNotificationError).

/**
 * Why a call to WeChat Pay failed:
 * - `api`: WeChat Pay answered 4xx/5xx with `{code, message}` (`status`, `code` set; 5xx and SYSTEM_ERROR are worth retrying);
 * - `timeout`: no complete answer within `timeoutMs`;
 * - `network`: no answer at all (refused, reset, DNS);
 * - `answer_signature`: the answer's signature is missing, stale, by an unknown key id or does not verify (not trusted);
 * - `answer_malformed`: a signed answer that is not the JSON the API promises.
 */
export type WechatPayErrorKind = 'api' | 'timeout' | 'network' | 'answer_signature' | 'answer_malformed'

export class WechatPayError extends Error {
  override name = 'WechatPayError'
  readonly kind: WechatPayErrorKind
  /** The HTTP status of the answer, when there was one. */
  readonly status: number | undefined
  /** WeChat Pay's error code (`ORDER_NOT_EXIST`, `SIGN_ERROR`, `SYSTEM_ERROR`…) for `api`. */
  readonly code: string | undefined

  constructor (kind: WechatPayErrorKind, message: string, opts: { status?: number, code?: string, cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.kind = kind
    this.status = opts.status
    this.code = opts.code
  }

  /** Whether trying again later can succeed (timeouts, network, 5xx, SYSTEM_ERROR / FREQUENCY_LIMITED). */
  get retryable (): boolean {
    if (this.kind === 'timeout' || this.kind === 'network') return true
    if (this.kind !== 'api') return false
    return (this.status ?? 0) >= 500 || this.code === 'SYSTEM_ERROR' || this.code === 'FREQUENCY_LIMITED' || this.code === 'RATELIMIT_EXCEEDED'
  }
}

/**
 * Why a callback was refused:
 * - `missing_headers`: a Wechatpay-Signature/-Timestamp/-Nonce/-Serial header is missing or malformed;
 * - `unknown_key`: Wechatpay-Serial names no configured public key;
 * - `stale_timestamp`: Wechatpay-Timestamp is more than 5 minutes from now;
 * - `bad_signature`: the signature does not verify over the raw body;
 * - `malformed`: the body (or the decrypted resource) is not the JSON of a payment notification;
 * - `decrypt_failed`: the resource does not decrypt (AEAD_AES_256_GCM with the APIv3 key, its nonce and associated_data);
 * - `not_success`: a genuine notification that is not TRANSACTION.SUCCESS with trade_state SUCCESS (`eventType` says which).
 */
export type NotificationErrorReason = 'missing_headers' | 'unknown_key' | 'stale_timestamp' | 'bad_signature' | 'malformed' | 'decrypt_failed' | 'not_success'

export class WechatPayNotificationError extends Error {
  override name = 'WechatPayNotificationError'
  readonly reason: NotificationErrorReason
  /** For `not_success`: the notification's event_type. */
  readonly eventType: string | undefined

  constructor (reason: NotificationErrorReason, message: string, opts: { eventType?: string, cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.reason = reason
    this.eventType = opts.eventType
  }
}
