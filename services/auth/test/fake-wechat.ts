// A fake WeChat API on loopback speaking jscode2session as WeChat does: one-use codes, errcodes, slowness.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Teardown } from './helper.ts'

export const FAKE_APPID = 'wx0123456789abcdef'
export const FAKE_SECRET = 'fake-app-secret-0123456789'

export interface FakeUser { openid: string, unionid?: string }

export interface FakeWechat {
  url: string
  /** Query strings received, in order (to check appid, secret, js_code, grant_type). */
  calls: URLSearchParams[]
  /** Request paths received, in order. */
  paths: string[]
  /** Issues a code for this user, valid once, as wx.login would. */
  code: (user: FakeUser) => string
  /** Knobs: answer every request with this errcode, this raw body or HTTP status, or only after this delay. */
  knobs: { errcode?: number, rawBody?: string, status?: number, delayMs?: number }
}

let n = 0

export async function startFakeWechat (t: Teardown): Promise<FakeWechat> {
  const codes = new Map<string, FakeUser>()
  const used = new Set<string>()
  const fake: FakeWechat = {
    url: '',
    calls: [],
    paths: [],
    code: (user) => {
      const code = `code-${++n}-${Math.random().toString(36).slice(2)}`
      codes.set(code, user)
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
    if (!url.pathname.endsWith('/sns/jscode2session')) { res.writeHead(404).end(); return }
    fake.calls.push(url.searchParams)
    fake.paths.push(url.pathname)
    if (fake.knobs.rawBody !== undefined) return send(fake.knobs.rawBody)
    if (fake.knobs.errcode !== undefined) return send({ errcode: fake.knobs.errcode, errmsg: 'fake error, rid: 1' })
    const q = url.searchParams
    if (q.get('appid') !== FAKE_APPID) return send({ errcode: 40013, errmsg: 'invalid appid' })
    if (q.get('secret') !== FAKE_SECRET) return send({ errcode: 40125, errmsg: 'invalid appsecret' })
    if (q.get('grant_type') !== 'authorization_code') return send({ errcode: 40002, errmsg: 'invalid grant_type' })
    const code = q.get('js_code') ?? ''
    if (used.has(code)) return send({ errcode: 40163, errmsg: 'code been used' })
    const user = codes.get(code)
    if (!user) return send({ errcode: 40029, errmsg: 'invalid code' })
    used.add(code)
    send({ openid: user.openid, session_key: `SESSIONKEY-${user.openid}==`, ...(user.unionid ? { unionid: user.unionid } : {}) })
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
