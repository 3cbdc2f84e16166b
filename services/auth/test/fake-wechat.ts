// A fake WeChat API on loopback speaking jscode2session (mini-programs) and /sns/oauth2/access_token (official accounts, websites) as WeChat does: one-use codes per app, errcodes, slowness.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Teardown } from './helper.ts'

export const FAKE_APPID = 'wx0123456789abcdef'
export const FAKE_SECRET = 'fake-app-secret-0123456789'

/** The apps of one fake Open Platform account: the mini-program (FAKE_APPID), an official account and a website. */
export const FAKE_APPS = [
  { appid: FAKE_APPID, secret: FAKE_SECRET, kind: 'miniprogram' },
  { appid: 'wxofficial000000001', secret: 'fake-official-secret-0001', kind: 'official_account' },
  { appid: 'wxwebsite0000000001', secret: 'fake-website-secret-00001', kind: 'website' }
] as const

export interface FakeUser { openid: string, unionid?: string }

export interface FakeWechat {
  url: string
  /** Query strings received, in order (to check appid, secret, js_code, grant_type). */
  calls: URLSearchParams[]
  /** Request paths received, in order. */
  paths: string[]
  /** Issues a code for this user of that app (default the mini-program), valid once, as wx.login or the OAuth page would. */
  code: (user: FakeUser, appid?: string) => string
  /** Knobs: answer every request with this errcode, this raw body or HTTP status, or only after this delay. */
  knobs: { errcode?: number, rawBody?: string, status?: number, delayMs?: number }
}

let n = 0

export async function startFakeWechat (t: Teardown): Promise<FakeWechat> {
  const codes = new Map<string, FakeUser & { appid: string }>()
  const used = new Set<string>()
  const fake: FakeWechat = {
    url: '',
    calls: [],
    paths: [],
    code: (user, appid = FAKE_APPID) => {
      const code = `code-${++n}-${Math.random().toString(36).slice(2)}`
      codes.set(code, { ...user, appid })
      return code
    },
    knobs: {}
  }

  const answer = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://fake')
    const send = (body: unknown) => {
      res.writeHead(fake.knobs.status ?? 200, { 'content-type': 'text/plain' })
      res.end(typeof body === 'string' ? body : JSON.stringify(body))
    }
    const oauth = url.pathname.endsWith('/sns/oauth2/access_token')
    if (!url.pathname.endsWith('/sns/jscode2session') && !oauth) { res.writeHead(404).end(); return }
    fake.calls.push(url.searchParams)
    fake.paths.push(url.pathname)
    if (fake.knobs.rawBody !== undefined) return send(fake.knobs.rawBody)
    if (fake.knobs.errcode !== undefined) return send({ errcode: fake.knobs.errcode, errmsg: 'fake error, rid: 1' })
    const q = url.searchParams
    const app = FAKE_APPS.find((a) => a.appid === q.get('appid'))
    // A mini-program logs in through jscode2session only, the others through OAuth only.
    if (!app || (app.kind === 'miniprogram') === oauth) return send({ errcode: 40013, errmsg: 'invalid appid' })
    if (q.get('secret') !== app.secret) return send({ errcode: 40125, errmsg: 'invalid appsecret' })
    if (q.get('grant_type') !== 'authorization_code') return send({ errcode: 40002, errmsg: 'invalid grant_type' })
    const code = q.get(oauth ? 'code' : 'js_code') ?? ''
    if (used.has(code)) return send({ errcode: 40163, errmsg: 'code been used' })
    const user = codes.get(code)
    if (!user || user.appid !== app.appid) return send({ errcode: 40029, errmsg: 'invalid code' })
    used.add(code)
    const unionid = user.unionid ? { unionid: user.unionid } : {}
    if (oauth) send({ access_token: `ACCESSTOKEN-${user.openid}`, expires_in: 7200, refresh_token: `REFRESH-${user.openid}`, openid: user.openid, scope: 'snsapi_login', ...unionid })
    else send({ openid: user.openid, session_key: `SESSIONKEY-${user.openid}==`, ...unionid })
  }

  const server = createServer((req, res) => {
    if (fake.knobs.delayMs) setTimeout(() => answer(req, res), fake.knobs.delayMs).unref()
    else answer(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return fake
}
