// A fake WeChat API on loopback speaking the real jscode2session protocol, for end-to-end tests.
import { createServer, type Server } from 'node:http'

export interface FakeWechat {
  url: string
  appid: string
  secret: string
  /** js_code → what WeChat answers for it; unknown codes answer errcode 40029. */
  codes: Map<string, { openid: string, unionid?: string } | { errcode: number, errmsg: string }>
  calls: number
  close: () => Promise<void>
}

interface Teardown { teardown: (fn: () => unknown) => void }

export async function startFakeWechat (t: Teardown): Promise<FakeWechat> {
  const fake: FakeWechat = { url: '', appid: 'wx-test-app', secret: 'wx-test-secret', codes: new Map(), calls: 0, close: async () => {} }
  const used = new Set<string>()
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    res.setHeader('content-type', 'text/plain')
    if (u.pathname !== '/sns/jscode2session') { res.statusCode = 404; res.end(); return }
    fake.calls++
    const q = u.searchParams
    if (q.get('appid') !== fake.appid || q.get('secret') !== fake.secret || q.get('grant_type') !== 'authorization_code') {
      res.end(JSON.stringify({ errcode: 40013, errmsg: 'invalid appid' }))
      return
    }
    const code = q.get('js_code') ?? ''
    const answer = fake.codes.get(code)
    if (!answer) { res.end(JSON.stringify({ errcode: 40029, errmsg: 'invalid code' })); return }
    if ('errcode' in answer) { res.end(JSON.stringify(answer)); return }
    // A code can be used once, as on the real service.
    if (used.has(code)) { res.end(JSON.stringify({ errcode: 40163, errmsg: 'code been used' })); return }
    used.add(code)
    res.end(JSON.stringify({ ...answer, session_key: 'SECRET-SESSION-KEY-never-leaves-auth' }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  fake.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  fake.close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  t.teardown(fake.close)
  return fake
}
