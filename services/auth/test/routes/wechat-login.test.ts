// POST /api/auth/wechat-login through a fake jscode2session on loopback: new, returning and linked users, errcodes.
import t from 'tap'
import { freePort } from '@chat-platform/platform/testing'
import { sql } from 'kysely'
import { buildTestApp } from '../helper.ts'
import { decodeJwt } from '../jwt.ts'
import { startFakeWechat, FAKE_APPID, FAKE_SECRET, type FakeWechat } from '../fake-wechat.ts'
import type { Teardown } from '../helper.ts'

async function setup (t: Teardown, env: Record<string, string> = {}) {
  const wx = await startFakeWechat(t)
  const s = await buildTestApp(t, { WECHAT_APPID: FAKE_APPID, WECHAT_SECRET: FAKE_SECRET, WECHAT_API_BASE: wx.url, ...env })
  const login = (code: string) => s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code } })
  const subOf = (res: { json: () => { access_token: string } }) => Number(decodeJwt(res.json().access_token).payload.sub)
  return { s, wx, login, subOf }
}

type Asserts = Pick<typeof t, 'equal'>
const expectProblem = (t: Asserts, res: { statusCode: number, json: () => { code: string } }, status: number, code: string, msg: string) => {
  t.equal(res.statusCode, status, msg)
  t.equal(res.json().code, code, msg)
}

t.test('unconfigured (no WECHAT_APPID/WECHAT_SECRET) is 503 service_unavailable', async (t) => {
  const s = await buildTestApp(t)
  const res = await s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code: 'abc' } })
  expectProblem(t, res, 503, 'service_unavailable', 'unconfigured')
})

t.test('a first login creates a user (email null, nickname 微信用户), its identity and auth.user.registered via wechat', async (t) => {
  const { s, wx, login, subOf } = await setup(t)
  const code = wx.code({ openid: 'oAbc123_new-user' })
  const res = await login(code)
  t.equal(res.statusCode, 200)
  t.equal(res.json().token_type, 'bearer')
  const userId = subOf(res)

  t.equal(wx.calls.length, 1)
  const q = wx.calls[0]
  t.same({ appid: q.get('appid'), secret: q.get('secret'), js_code: q.get('js_code'), grant_type: q.get('grant_type') },
    { appid: FAKE_APPID, secret: FAKE_SECRET, js_code: code, grant_type: 'authorization_code' })

  const user = await s.deps.db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirstOrThrow()
  t.equal(user.email, null)
  t.equal(user.password_hash, null)
  t.equal(user.nickname, '微信用户')
  const ids = await s.deps.db.selectFrom('wechat_identities').selectAll().execute()
  t.match(ids, [{ appid: FAKE_APPID, openid: 'oAbc123_new-user', unionid: null, user_id: userId }])
  const events = await s.deps.db.selectFrom('outbox').selectAll().execute()
  t.equal(events.length, 1)
  t.match(events[0].payload, { user_id: userId, via: 'wechat' })

  await s.seedBalance(userId, 1000)
  const profile = await s.app.inject({ url: '/api/user/profile', headers: { authorization: `Bearer ${res.json().access_token}` } })
  t.match(profile.json(), { id: userId, email: null, nickname: '微信用户', avatar_url: null, tokens: 1000 })
})

t.test('a returning user (same openid, new code) gets the same account and no new registration', async (t) => {
  const { s, wx, login, subOf } = await setup(t)
  const first = await login(wx.code({ openid: 'oReturning' }))
  const second = await login(wx.code({ openid: 'oReturning' }))
  t.equal(second.statusCode, 200)
  t.equal(subOf(second), subOf(first))
  t.equal((await s.deps.db.selectFrom('users').select('id').execute()).length, 1)
  t.equal((await s.deps.db.selectFrom('outbox').select('id').execute()).length, 1)
})

t.test('a unionid known from another app of the account links to that user instead of creating one', async (t) => {
  const { s, wx, login, subOf } = await setup(t)
  const existing = await s.register({ email: 'linked@example.com' })
  // The same person signed in earlier through another mini-program of the same Open Platform account.
  await s.deps.db.insertInto('wechat_identities').values({ appid: 'wxOTHERAPP', openid: 'oOtherApp', unionid: 'uPerson1', user_id: existing.user_id }).execute()
  const res = await login(wx.code({ openid: 'oThisApp', unionid: 'uPerson1' }))
  t.equal(res.statusCode, 200)
  t.equal(subOf(res), existing.user_id)
  t.equal((await s.deps.db.selectFrom('users').select('id').execute()).length, 1, 'no new user')
  t.equal((await s.deps.db.selectFrom('outbox').select('id').execute()).length, 1, 'only the original registration event')
  const row = await s.deps.db.selectFrom('wechat_identities').selectAll().where('openid', '=', 'oThisApp').executeTakeFirstOrThrow()
  t.match(row, { appid: FAKE_APPID, unionid: 'uPerson1', user_id: existing.user_id })
})

t.test('a unionid appearing later is recorded on the identity', async (t) => {
  const { s, wx, login, subOf } = await setup(t)
  const first = await login(wx.code({ openid: 'oLater' }))
  const second = await login(wx.code({ openid: 'oLater', unionid: 'uLater' }))
  t.equal(subOf(second), subOf(first))
  const row = await s.deps.db.selectFrom('wechat_identities').selectAll().where('openid', '=', 'oLater').executeTakeFirstOrThrow()
  t.equal(row.unionid, 'uLater')
})

t.test('concurrent first logins of one person create exactly one user', async (t) => {
  const { s, wx, login, subOf } = await setup(t)
  const codes = Array.from({ length: 4 }, () => wx.code({ openid: 'oDoubleTap', unionid: 'uDoubleTap' }))
  const results = await Promise.all(codes.map(login))
  t.same(results.map((r) => r.statusCode), [200, 200, 200, 200])
  t.equal(new Set(results.map(subOf)).size, 1)
  t.equal((await s.deps.db.selectFrom('users').select('id').execute()).length, 1)
  t.equal((await s.deps.db.selectFrom('outbox').select('id').execute()).length, 1)
})

t.test('codes WeChat rejects are 401 wechat_code_invalid: unknown (40029), reused (40163), blocked (40226)', async (t) => {
  const { wx, login } = await setup(t)
  expectProblem(t, await login('never-issued'), 401, 'wechat_code_invalid', '40029')
  const code = wx.code({ openid: 'oOnce' })
  t.equal((await login(code)).statusCode, 200)
  expectProblem(t, await login(code), 401, 'wechat_code_invalid', '40163 code been used')
  wx.knobs.errcode = 40226
  expectProblem(t, await login(wx.code({ openid: 'oRisky' })), 401, 'wechat_code_invalid', '40226')
})

t.test('45011 (quota) is 429 rate_limited with Retry-After: 60', async (t) => {
  const { wx, login } = await setup(t)
  wx.knobs.errcode = 45011
  const res = await login(wx.code({ openid: 'o1' }))
  expectProblem(t, res, 429, 'rate_limited', '45011')
  t.equal(res.headers['retry-after'], '60')
})

t.test('WeChat busy (-1), 5xx, too slow or unreachable is 503 service_unavailable', async (t) => {
  const { wx, login } = await setup(t, { WECHAT_TIMEOUT_MS: '300' })
  wx.knobs.errcode = -1
  expectProblem(t, await login('c1'), 503, 'service_unavailable', 'errcode -1')
  wx.knobs.errcode = undefined
  wx.knobs.status = 502
  wx.knobs.rawBody = '<html>bad gateway</html>'
  expectProblem(t, await login('c2'), 503, 'service_unavailable', 'HTTP 502')
  wx.knobs.status = undefined
  wx.knobs.rawBody = undefined
  wx.knobs.delayMs = 5_000
  expectProblem(t, await login(wx.code({ openid: 'oSlow' })), 503, 'service_unavailable', 'no answer within WECHAT_TIMEOUT_MS')

  const closed = await buildTestApp(t, { WECHAT_APPID: FAKE_APPID, WECHAT_SECRET: FAKE_SECRET, WECHAT_API_BASE: `http://127.0.0.1:${await freePort()}` })
  expectProblem(t, await closed.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code: 'c3' } }), 503, 'service_unavailable', 'unreachable')
})

t.test('other errcodes and malformed answers are 502 upstream_error', async (t) => {
  const { wx, login } = await setup(t, { WECHAT_SECRET: 'a-wrong-secret' })
  expectProblem(t, await login(wx.code({ openid: 'o1' })), 502, 'upstream_error', '40125 invalid appsecret')
  const cases: [FakeWechat['knobs'], string][] = [
    [{ rawBody: 'not json' }, 'not JSON'],
    [{ rawBody: '{"session_key":"abc"}' }, 'no openid'],
    [{ rawBody: '{"openid":"has spaces in it"}' }, 'openid not opaque'],
    [{ rawBody: '{"openid":"oOk","unionid":42}' }, 'unionid not a string'],
    [{ rawBody: '[1,2]' }, 'not an object'],
    [{ rawBody: 'null' }, 'null'],
    [{ rawBody: '{"errcode":"40029"}' }, 'errcode as a string'],
    [{ status: 404, rawBody: 'not found' }, 'HTTP 404']
  ]
  for (const [knobs, name] of cases) {
    wx.knobs = Object.assign(wx.knobs, { status: undefined, rawBody: undefined }, knobs)
    expectProblem(t, await login('c'), 502, 'upstream_error', name)
  }
})

t.test('a missing or empty code is 400 validation_failed, and WeChat is not called', async (t) => {
  const { wx, s } = await setup(t)
  for (const payload of [{}, { code: '' }, { code: 123 }]) {
    const res = await s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload })
    expectProblem(t, res, 400, 'validation_failed', JSON.stringify(payload))
  }
  t.equal(wx.calls.length, 0)
})

t.test('the app secret and session_key never reach a response, a log line or the database', async (t) => {
  const { s, wx, login } = await setup(t, { WECHAT_TIMEOUT_MS: '300' })
  const bodies: string[] = []
  bodies.push((await login(wx.code({ openid: 'oSecret', unionid: 'uSecret' }))).body)
  for (const knobs of [{ errcode: -1 }, { errcode: 99999 }, { rawBody: 'garbage' }, { delayMs: 5_000 }] as FakeWechat['knobs'][]) {
    wx.knobs = knobs
    bodies.push((await login(wx.code({ openid: 'oSecret' }))).body)
  }
  const everything = bodies.join('\n') + s.logs()
  t.notMatch(everything, FAKE_SECRET)
  t.notMatch(everything, 'SESSIONKEY')
  t.notMatch(everything, 'jscode2session?')
  t.match(s.logs(), /jscode2session: errcode 99999/, 'the failure itself is logged (errcode, not URL)')
  const columns = await sql<{ column_name: string }>`select column_name from information_schema.columns where table_schema = 'auth'`.execute(s.deps.db)
  t.notOk(columns.rows.some((c) => /session_key|secret/.test(c.column_name)), 'no column for session_key')
})

t.test('WECHAT_API_BASE with a path (a forward proxy) keeps its path', async (t) => {
  const wx = await startFakeWechat(t)
  const s = await buildTestApp(t, { WECHAT_APPID: FAKE_APPID, WECHAT_SECRET: FAKE_SECRET, WECHAT_API_BASE: `${wx.url}/wechat-proxy/` })
  const res = await s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code: wx.code({ openid: 'oProxied' }) } })
  t.equal(res.statusCode, 200)
  t.equal(wx.paths.at(-1), '/wechat-proxy/sns/jscode2session')
})

t.test('several apps of one Open Platform account (WECHAT_APPS): one user by unionid, an openid per app', async (t) => {
  const { FAKE_APPS } = await import('../fake-wechat.ts')
  const apps = FAKE_APPS.filter((a) => a.kind !== 'miniprogram')
  const { s, wx, login, subOf } = await setup(t, { WECHAT_APPS: JSON.stringify(apps) })
  const inApp = (code: string, appid?: string) => s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: appid ? { code, appid } : { code } })
  const mini = await login(wx.code({ openid: 'oMini-1', unionid: 'uSamePerson' }))
  t.equal(mini.statusCode, 200, 'no appid: the mini-program (WECHAT_APPID)')
  const userId = subOf(mini)
  const official = await inApp(wx.code({ openid: 'oOfficial-1', unionid: 'uSamePerson' }, apps[0].appid), apps[0].appid)
  t.equal(official.statusCode, 200, official.body)
  t.equal(subOf(official), userId, 'the official account finds the same user by unionid')
  const web = await inApp(wx.code({ openid: 'oWeb-1', unionid: 'uSamePerson' }, apps[1].appid), apps[1].appid)
  t.equal(subOf(web), userId, 'and so does the website QR login')
  t.same(wx.paths.slice(-2).map((p) => p.replace(/^.*\/sns/, '/sns')), ['/sns/oauth2/access_token', '/sns/oauth2/access_token'], 'OAuth for those two')
  t.equal(wx.calls.at(-1)!.get('code') !== null && wx.calls.at(-1)!.get('js_code') === null, true, 'they send code, not js_code')
  const ids = await s.deps.db.selectFrom('wechat_identities').select(['appid', 'openid']).where('user_id', '=', userId).orderBy('id').execute()
  t.same(ids, [{ appid: FAKE_APPID, openid: 'oMini-1' }, { appid: apps[0].appid, openid: 'oOfficial-1' }, { appid: apps[1].appid, openid: 'oWeb-1' }], 'one user, an openid per app')
  const events = await s.deps.db.selectFrom('outbox').select('subject').where('subject', 'like', '%auth.user.registered').execute()
  t.equal(events.length, 1, 'registered once')

  const unknown = await inApp('any', 'wxnotconfigured')
  expectProblem(t, unknown, 400, 'validation_failed', 'an appid not configured')
  const wrongApp = await inApp(wx.code({ openid: 'oX' }, apps[0].appid), apps[1].appid)
  expectProblem(t, wrongApp, 401, 'wechat_code_invalid', "another app's code")
})

t.test('WECHAT_APPS alone (no WECHAT_APPID): its first app is the default; a bad value stops the boot', async (t) => {
  const { loadAuthConfig } = await import('../../src/config.ts')
  const { FAKE_APPS } = await import('../fake-wechat.ts')
  const wx = await startFakeWechat(t)
  const s = await buildTestApp(t, { WECHAT_APPS: JSON.stringify([FAKE_APPS[2]]), WECHAT_API_BASE: wx.url })
  const res = await s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code: wx.code({ openid: 'oWebOnly' }, FAKE_APPS[2].appid) } })
  t.equal(res.statusCode, 200, res.body)
  for (const bad of ['nope', '{}', '[{"appid":"wx1","secret":"s","kind":"tv"}]', '[{"appid":"wx1","kind":"website"}]']) {
    t.throws(() => loadAuthConfig({ WECHAT_APPS: bad }), /WECHAT_APPS/, bad)
  }
})
