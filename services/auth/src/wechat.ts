// WeChat login: a mini-program's jscode2session, or an official account's / website's OAuth code, with WeChat's answers mapped to our problem codes.
import { ProblemError } from '@chat-platform/platform'

export interface WechatOptions { base: string, appid: string, secret: string, timeoutMs: number, kind?: 'miniprogram' | 'official_account' | 'website' }
export interface WechatSession { openid: string, unionid?: string }

const INVALID_CODE = new Set([40029, 40163, 40226])
const QUOTA = 45011
const BUSY = -1
const MAX_BODY = 64 * 1024
// openid/unionid are opaque printable ASCII (about 28 characters today); anything else is not WeChat talking.
const OPAQUE_ID = /^[\x21-\x7e]{1,128}$/

const unavailable = (why: string) => new ProblemError('service_unavailable', 'WeChat login is unavailable right now; try again shortly.', { cause: new Error(`jscode2session: ${why}`) })
const upstream = (why: string) => new ProblemError('upstream_error', 'WeChat answered with an unexpected error.', { cause: new Error(`jscode2session: ${why}`) })

/**
 * Exchanges a login code for the user's openid (and unionid): a mini-program's `wx.login` code through
 * jscode2session, an official account's or a website's OAuth code through /sns/oauth2/access_token. The
 * `session_key` or `access_token` in the answer is dropped here: nothing in this service needs it, so it is
 * never stored, returned or logged. Error causes never carry the URL, whose query string holds the app secret.
 */
export async function code2Session (opts: WechatOptions, code: string): Promise<WechatSession> {
  const oauth = opts.kind === 'official_account' || opts.kind === 'website'
  // Appended, not resolved: a base with a path (a forward proxy, say) keeps it.
  const url = new URL(`${opts.base.replace(/\/+$/, '')}${oauth ? '/sns/oauth2/access_token' : '/sns/jscode2session'}`)
  url.search = new URLSearchParams({ appid: opts.appid, secret: opts.secret, [oauth ? 'code' : 'js_code']: code, grant_type: 'authorization_code' }).toString()
  let text: string
  let status: number
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs), redirect: 'error', headers: { accept: 'application/json' } })
    status = res.status
    text = await res.text()
  } catch (err) {
    const name = (err as Error)?.name
    throw unavailable(name === 'TimeoutError' ? `no answer within ${opts.timeoutMs} ms` : `unreachable (${(err as { cause?: { code?: string } })?.cause?.code ?? name})`)
  }
  if (status >= 500) throw unavailable(`HTTP ${status}`)
  if (status !== 200) throw upstream(`HTTP ${status}`)
  if (text.length > MAX_BODY) throw upstream('answer too large')
  let body: { errcode?: unknown, errmsg?: unknown, openid?: unknown, unionid?: unknown }
  try {
    body = JSON.parse(text)
  } catch {
    throw upstream('answer is not JSON')
  }
  if (typeof body !== 'object' || body === null) throw upstream('answer is not an object')
  const errcode = body.errcode ?? 0
  if (errcode !== 0) {
    const errmsg = typeof body.errmsg === 'string' ? body.errmsg.slice(0, 200) : ''
    if (typeof errcode === 'number' && INVALID_CODE.has(errcode)) {
      throw new ProblemError('wechat_code_invalid', 'WeChat rejected the login code; call wx.login again for a fresh one.')
    }
    if (errcode === QUOTA) {
      throw new ProblemError('rate_limited', 'WeChat login is busy for this app; try again in a minute.', { headers: { 'retry-after': '60' } })
    }
    if (errcode === BUSY) throw unavailable(`errcode -1 ${errmsg}`)
    throw upstream(`errcode ${JSON.stringify(errcode).slice(0, 20)} ${errmsg}`)
  }
  if (typeof body.openid !== 'string' || !OPAQUE_ID.test(body.openid)) throw upstream('answer has no valid openid')
  const session: WechatSession = { openid: body.openid }
  if (body.unionid !== undefined && body.unionid !== null && body.unionid !== '') {
    if (typeof body.unionid !== 'string' || !OPAQUE_ID.test(body.unionid)) throw upstream('answer has an invalid unionid')
    session.unionid = body.unionid
  }
  return session
}
