// The whole system through the gateway: every route of DESIGN §2 with its documented errors, the user
// journey (WeChat and email), streaming, and idempotent retries of recharge and send.
import t from 'tap'
import pg from 'pg'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from './support/system.ts'
import { startFakeWechat } from './support/fake-wechat.ts'
import {
  SIGNUP_BONUS, assertAuditPasses, assertExactBalance, assertNoLeak, assertProblem, createSession, listAll, recharge,
  registerUser, sendStreaming, uniqueEmail, type User
} from './support/client.ts'

t.setTimeout(240_000)

const ISO_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/
const sim = await startSimulator()
t.teardown(() => sim.close())
const wechat = await startFakeWechat(t)
const system = await startSystem(t, {
  env: {
    OPENAI_BASE_URL: sim.url,
    OPENAI_API_KEY: 'sk-e2e',
    WECHAT_APPID: wechat.appid,
    WECHAT_SECRET: wechat.secret,
    WECHAT_API_BASE: wechat.url,
    AUTH_RATE_LIMIT_MAX: '1000',
    RATE_LIMIT_MAX: '5000'
  }
})
t.beforeEach(() => sim.reset())

const users: User[] = []
const user = async (tag = 'api') => { const u = await registerUser(system, tag); users.push(u); return u }

t.test('public routes: health, docs, unknown and internal routes', async (t) => {
  t.equal((await system.request('GET', '/healthz')).status, 200)
  const ready = await system.request('GET', '/readyz')
  t.equal(ready.status, 200, 'readyz: every service answers')
  const metrics = await fetch(`${system.gatewayUrl}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /http_request_duration_seconds/)
  const docs = await system.request('GET', '/docs/json')
  t.equal(docs.status, 200)
  const paths = Object.keys(docs.body.paths)
  for (const p of ['/api/auth/wechat-login', '/api/auth/email-login', '/api/auth/register', '/api/auth/verify', '/api/user/profile',
    '/api/user/balance', '/api/sessions', '/api/sessions/{session_id}', '/api/sessions/{session_id}/messages', '/api/billing/recharge', '/api/billing/transactions']) {
    t.ok(paths.includes(p), `/docs has ${p}`)
  }
  t.notOk(paths.some((p) => p.startsWith('/internal')), '/docs shows no internal route')
  t.equal((await fetch(`${system.gatewayUrl}/docs`)).status, 200, 'the docs UI')
  assertProblem(t, await system.request('GET', '/api/nothing-here'), 404, 'not_found', 'unknown route')
  const u = await user()
  assertProblem(t, await system.request('GET', `/internal/balances/${u.id}`, { token: u.token }), 404, 'not_found', 'internal route through the gateway')
  assertProblem(t, await system.request('GET', '/api/sessions/../../internal/usage?since=2020-01-01T00:00:00Z', { token: u.token }), 404, 'not_found', 'path escape')
})

t.test('each service\'s /internal/ routes need INTERNAL_TOKEN; the gateway routes none of them, token or not', async (t) => {
  const u = await user('internal')
  const header = (value: string) => ({ 'x-internal-token': value })
  for (const [to, path] of [['auth', `/internal/users/${u.id}`], ['billing', `/internal/balances/${u.id}`], ['chat', '/internal/usage?since=2020-01-01T00:00:00Z']] as const) {
    assertProblem(t, await system.request('GET', path, { to, headers: header('') }), 401, 'unauthorized', `${to} without the token`)
    assertProblem(t, await system.request('GET', path, { to, headers: header(`${system.env.INTERNAL_TOKEN}0`) }), 403, 'forbidden', `${to} with a wrong token`)
    t.equal((await system.request('GET', path, { to })).status, 200, `${to} with the token`)
    assertProblem(t, await system.request('GET', path, { token: u.token, headers: header(system.env.INTERNAL_TOKEN) }), 404, 'not_found', `${path} through the gateway, even with the token`)
  }
})

t.test('register, email login, verify: success and documented errors', async (t) => {
  const email = uniqueEmail('reg')
  const reg = await system.request('POST', '/api/auth/register', { body: { email: `  ${email.toUpperCase()} `, password: 'password-1', nickname: '  小明 ' } })
  t.equal(reg.status, 200)
  t.equal(reg.body.message, '注册成功')
  t.ok(Number.isInteger(reg.body.user_id) && reg.body.user_id > 0, 'integer user id')
  assertProblem(t, await system.request('POST', '/api/auth/register', { body: { email, password: 'password-2', nickname: 'x' } }), 409, 'email_taken', 'same email, other case')
  for (const [body, why] of [
    [{ email: 'not-an-email', password: 'password-1', nickname: 'x' }, 'bad email'],
    [{ email: uniqueEmail(), password: 'short', nickname: 'x' }, 'password under 8'],
    [{ email: uniqueEmail(), password: 'password-1', nickname: '   ' }, 'blank nickname'],
    [{ email: uniqueEmail(), password: 'password-1', nickname: 'n'.repeat(33) }, 'nickname over 32'],
    [{ email: uniqueEmail(), password: 'password-1' }, 'no nickname']
  ] as const) {
    const res = await system.request('POST', '/api/auth/register', { body })
    assertProblem(t, res, 400, 'validation_failed', why)
    t.ok(Array.isArray(res.body.errors) && res.body.errors.length > 0, `${why}: errors[] lists what is wrong`)
  }

  const login = await system.request('POST', '/api/auth/email-login', { body: { email: ` ${email.toUpperCase()}`, password: 'password-1' } })
  t.equal(login.status, 200)
  t.equal(login.body.token_type, 'bearer')
  t.type(login.body.access_token, 'string')
  const wrong = await system.request('POST', '/api/auth/email-login', { body: { email, password: 'password-x' } })
  const unknown = await system.request('POST', '/api/auth/email-login', { body: { email: uniqueEmail('nobody'), password: 'password-x' } })
  assertProblem(t, wrong, 401, 'invalid_credentials', 'wrong password')
  assertProblem(t, unknown, 401, 'invalid_credentials', 'unknown email')
  t.same({ ...wrong.body, request_id: '' }, { ...unknown.body, request_id: '' }, 'the same answer for an unknown email')
  assertProblem(t, await system.request('POST', '/api/auth/email-login', { body: { email } }), 400, 'validation_failed', 'no password')

  const verify = await system.request('GET', '/api/auth/verify', { token: login.body.access_token })
  t.equal(verify.status, 200)
  t.same(verify.body, { user: { id: reg.body.user_id, email, nickname: '小明', tokens: SIGNUP_BONUS } }, 'verify: the user, tokens = the bonus at once')
  const noToken = await system.request('GET', '/api/auth/verify')
  assertProblem(t, noToken, 401, 'unauthorized', 'no token')
  t.equal(noToken.headers.get('www-authenticate'), 'Bearer')
})

t.test('WeChat login: new and returning user, rejected codes', async (t) => {
  wechat.codes.set('code-a1', { openid: 'openid-journey-a' })
  wechat.codes.set('code-a2', { openid: 'openid-journey-a' })
  wechat.codes.set('code-bad', { errcode: 40163, errmsg: 'code been used' })
  const first = await system.request('POST', '/api/auth/wechat-login', { body: { code: 'code-a1' } })
  t.equal(first.status, 200)
  t.equal(first.body.token_type, 'bearer')
  const again = await system.request('POST', '/api/auth/wechat-login', { body: { code: 'code-a2' } })
  t.equal(again.status, 200)
  const a = await system.request('GET', '/api/auth/verify', { token: first.body.access_token })
  const b = await system.request('GET', '/api/auth/verify', { token: again.body.access_token })
  t.equal(a.body.user.id, b.body.user.id, 'the same openid is the same user')
  t.equal(a.body.user.email, null)
  assertProblem(t, await system.request('POST', '/api/auth/wechat-login', { body: { code: 'code-a1' } }), 401, 'wechat_code_invalid', 'a used code')
  assertProblem(t, await system.request('POST', '/api/auth/wechat-login', { body: { code: 'never-issued' } }), 401, 'wechat_code_invalid', 'an unknown code')
  assertProblem(t, await system.request('POST', '/api/auth/wechat-login', { body: { code: 'code-bad' } }), 401, 'wechat_code_invalid', 'errcode 40163')
  assertProblem(t, await system.request('POST', '/api/auth/wechat-login', { body: {} }), 400, 'validation_failed', 'no code')
  const raw = JSON.stringify([first.body, again.body, a.body])
  t.notMatch(raw, /SECRET-SESSION-KEY|session_key|wx-test-secret/, 'session_key and the app secret never reach the client')
})

t.test('profile: read, update, validation', async (t) => {
  const u = await user('prof')
  const got = await system.request('GET', '/api/user/profile', { token: u.token })
  t.equal(got.status, 200)
  t.match(got.body, { id: u.id, email: u.email, nickname: 'prof', avatar_url: null, tokens: SIGNUP_BONUS })
  t.match(got.body.created_at, ISO_Z)
  t.match(got.body.updated_at, ISO_Z)
  const put = await system.request('PUT', '/api/user/profile', { token: u.token, body: { nickname: ' 新名字 ', avatar_url: 'https://cdn.example.com/a.png' } })
  t.equal(put.status, 200)
  t.match(put.body, { id: u.id, nickname: '新名字', avatar_url: 'https://cdn.example.com/a.png', tokens: SIGNUP_BONUS })
  t.ok(put.body.updated_at >= got.body.updated_at, 'updated_at moves forward')
  t.match((await system.request('GET', '/api/user/profile', { token: u.token })).body, { nickname: '新名字', avatar_url: 'https://cdn.example.com/a.png' }, 'stored')
  for (const [body, why] of [
    [{ avatar_url: 'ftp://example.com/a.png' }, 'not http(s)'],
    [{ avatar_url: 'javascript:alert(1)' }, 'javascript: URL'],
    [{ avatar_url: `https://example.com/${'a'.repeat(520)}` }, 'over 512'],
    [{ nickname: '' }, 'empty nickname'],
    [{ nickname: 'n'.repeat(33) }, 'nickname over 32'],
    [{ nickname: 7 }, 'nickname a number']
  ] as const) assertProblem(t, await system.request('PUT', '/api/user/profile', { token: u.token, body }), 400, 'validation_failed', why)
  assertProblem(t, await system.request('GET', '/api/user/profile'), 401, 'unauthorized', 'no token')
})

t.test('sessions: create, list (newest first, paged), delete, errors', async (t) => {
  const u = await user('sess')
  const titled = await system.request('POST', '/api/sessions', { token: u.token, body: { title: '  工作  ' } })
  t.equal(titled.status, 200)
  t.match(titled.body, { user_id: u.id, title: '工作' })
  t.match(titled.body.created_at, ISO_Z)
  const untitled = await system.request('POST', '/api/sessions', { token: u.token, body: {} })
  t.equal(untitled.body.title, '新会话', 'omitted title')
  assertProblem(t, await system.request('POST', '/api/sessions', { token: u.token, body: { title: 't'.repeat(101) } }), 400, 'validation_failed', 'title over 100')
  assertProblem(t, await system.request('POST', '/api/sessions', { token: u.token, body: { title: '   ' } }), 400, 'validation_failed', 'blank title')
  const third = await createSession(system, u, 'third')
  const list = await system.request('GET', '/api/sessions', { token: u.token })
  t.same(list.body.map((s: { id: number }) => s.id), [third, untitled.body.id, titled.body.id], 'newest first')
  const page1 = await system.request('GET', '/api/sessions?limit=2', { token: u.token })
  t.same(page1.body.map((s: { id: number }) => s.id), [third, untitled.body.id])
  const page2 = await system.request('GET', `/api/sessions?limit=2&before_id=${untitled.body.id}`, { token: u.token })
  t.same(page2.body.map((s: { id: number }) => s.id), [titled.body.id], 'before_id continues')
  for (const q of ['limit=0', 'limit=201', 'limit=abc', 'before_id=-1', 'limit=1.5']) {
    assertProblem(t, await system.request('GET', `/api/sessions?${q}`, { token: u.token }), 400, 'validation_failed', q)
  }
  const del = await system.request('DELETE', `/api/sessions/${third}`, { token: u.token })
  t.equal(del.status, 200)
  t.same(del.body, { message: '会话删除成功' })
  assertProblem(t, await system.request('DELETE', `/api/sessions/${third}`, { token: u.token }), 404, 'not_found', 'deleted twice')
  // The mini-program's wx.request sends `content-type: application/json` with no body on every method.
  const wx = { 'content-type': 'application/json' }
  const wxDel = await system.request('DELETE', `/api/sessions/${untitled.body.id}`, { token: u.token, headers: wx })
  t.equal(wxDel.status, 200, 'DELETE with a JSON content type and no body')
  t.same(wxDel.body, { message: '会话删除成功' })
  t.equal((await system.request('GET', '/api/sessions', { token: u.token, headers: wx })).status, 200, 'GET with a JSON content type and no body')
  assertProblem(t, await system.request('GET', `/api/sessions/${third}/messages`, { token: u.token }), 404, 'not_found', 'messages of a deleted session')
  assertProblem(t, await system.request('DELETE', '/api/sessions/abc', { token: u.token }), 400, 'validation_failed', 'non-integer id')
  assertProblem(t, await system.request('GET', '/api/sessions'), 401, 'unauthorized', 'no token')
})

t.test('messages: send and list, errors, 402 at a spent balance', async (t) => {
  const u = await user('msg')
  const sid = await createSession(system, u)
  const sent = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'Hello there', role: 'user' } })
  t.equal(sent.status, 200)
  t.match(sent.body, { session_id: sid, role: 'assistant', content: /Hello there/ })
  t.ok(sent.body.tokens > 0, 'the reply has tokens')
  t.match(sent.body.created_at, ISO_Z)
  const noRole = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'second' } })
  t.equal(noRole.status, 200, 'role omitted means user')
  const msgs = await system.request('GET', `/api/sessions/${sid}/messages`, { token: u.token })
  t.same(msgs.body.map((m: { role: string }) => m.role), ['user', 'assistant', 'user', 'assistant'], 'oldest first')
  t.equal(msgs.body[1].id, sent.body.id)
  t.ok(msgs.body[0].tokens > 0, 'the user message carries the prompt tokens')
  t.ok(msgs.body[2].tokens > msgs.body[0].tokens, 'the second prompt includes the history')
  const latest = await system.request('GET', `/api/sessions/${sid}/messages?limit=2`, { token: u.token })
  t.same(latest.body.map((m: { id: number }) => m.id), msgs.body.slice(2).map((m: { id: number }) => m.id), 'limit: the newest, oldest first')
  const older = await system.request('GET', `/api/sessions/${sid}/messages?limit=2&before_id=${msgs.body[2].id}`, { token: u.token })
  t.same(older.body.map((m: { id: number }) => m.id), msgs.body.slice(0, 2).map((m: { id: number }) => m.id), 'before_id pages back')

  for (const [body, why] of [
    [{ content: 'x', role: 'assistant' }, 'role assistant'],
    [{ content: 'x', role: 'system' }, 'role system'],
    [{ content: '' }, 'empty content'],
    [{ content: 'x'.repeat(16_001) }, 'content over 16000'],
    [{}, 'no content']
  ] as const) assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body }), 400, 'validation_failed', why)
  assertProblem(t, await system.request('POST', '/api/sessions/999999999/messages', { token: u.token, body: { content: 'x' } }), 404, 'not_found', 'no such session')
  assertProblem(t, await system.request('GET', '/api/sessions/999999999/messages', { token: u.token }), 404, 'not_found', 'no such session (list)')
  await assertExactBalance(t, system, u)

  // Spend everything: one exchange the provider reports as very expensive, then 402 before the LLM is called.
  sim.reset({ usage: { prompt_tokens: SIGNUP_BONUS, completion_tokens: 500 } })
  t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'expensive' } })).status, 200)
  sim.reset()
  await assertExactBalance(t, system, u)
  const balance = (await system.request('GET', '/api/user/balance', { token: u.token })).body.balance
  t.ok(balance < 0, `the balance went below zero (${balance}) by one exchange at most`)
  const calls = sim.requests.length
  const refused = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'more please' } })
  assertProblem(t, refused, 402, 'insufficient_balance')
  t.equal(sim.requests.length, calls, 'the LLM was not called')
  const streamedRefusal = await sendStreaming(system, u.token, sid, 'more please')
  t.equal(streamedRefusal.status, 402, 'streaming: 402 is an ordinary problem answer')
  t.equal(streamedRefusal.body?.code, 'insufficient_balance')
  t.equal((await listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first')).length, 6, 'a refused send stores nothing')
  const topUp = await recharge(system, u, 2000)
  t.equal(topUp.status, 200)
  t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'back again' } })).status, 200, 'after a recharge it works again')
  await assertExactBalance(t, system, u)
})

t.test('billing: balance, recharge, transactions, errors', async (t) => {
  const u = await user('bill')
  t.same((await system.request('GET', '/api/user/balance', { token: u.token })).body, { balance: SIGNUP_BONUS })
  const r1 = await recharge(system, u, 250)
  t.same(r1.body, { message: '充值成功', balance: SIGNUP_BONUS + 250 })
  const r2 = await recharge(system, u, 1)
  t.equal(r2.body.balance, SIGNUP_BONUS + 251)
  const txs = await system.request('GET', '/api/billing/transactions', { token: u.token })
  t.equal(txs.status, 200)
  t.equal(txs.body.length, 3)
  t.match(txs.body[0], { user_id: u.id, change_amount: 1, balance_after: SIGNUP_BONUS + 251 })
  t.match(txs.body[1], { change_amount: 250, balance_after: SIGNUP_BONUS + 250 })
  t.match(txs.body[2], { change_amount: SIGNUP_BONUS, balance_after: SIGNUP_BONUS, description: '注册赠送' })
  t.ok(txs.body.every((x: { created_at: string, description: string }) => ISO_Z.test(x.created_at) && x.description.length > 0), 'times and descriptions')
  const one = await system.request('GET', '/api/billing/transactions?limit=1', { token: u.token })
  t.same(one.body.map((x: { id: number }) => x.id), [txs.body[0].id])
  const next = await system.request('GET', `/api/billing/transactions?limit=5&before_id=${txs.body[0].id}`, { token: u.token })
  t.same(next.body.map((x: { id: number }) => x.id), txs.body.slice(1).map((x: { id: number }) => x.id), 'before_id pages on')
  for (const amount of [0, -5, 1.5, '10', 1_000_001, null]) {
    assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: u.token, body: { amount } }), 400, 'validation_failed', `amount ${JSON.stringify(amount)}`)
  }
  const other = await user('bill-other')
  assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: u.token, body: { amount: 5, user_id: other.id } }), 403, 'forbidden', 'recharging another user under the self policy')
  assertProblem(t, await system.request('GET', '/api/billing/transactions?limit=500', { token: u.token }), 400, 'validation_failed', 'limit over 200')
  assertProblem(t, await system.request('GET', '/api/user/balance'), 401, 'unauthorized', 'no token')
  t.equal((await system.request('GET', '/api/user/balance', { token: other.token })).body.balance, SIGNUP_BONUS, 'nothing reached the other user')
  await assertExactBalance(t, system, u)
})

t.test('streaming through the gateway: deltas, then done with the stored message', async (t) => {
  const u = await user('sse')
  const sid = await createSession(system, u)
  sim.reset({ words: 60, chunkSize: 8, chunkDelayMs: 2 })
  let firstDeltaAt = 0
  const res = await sendStreaming(system, u.token, sid, 'Stream me a story', { onEvent: (e) => { if (e.event === 'delta' && !firstDeltaAt) firstDeltaAt = Date.now() } })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  t.equal(res.headers.get('x-accel-buffering'), 'no')
  const deltas = res.events.filter((e) => e.event === 'delta')
  t.ok(deltas.length > 10, `many delta events (${deltas.length})`)
  const done = res.events.at(-1)!
  t.equal(done.event, 'done', 'the last event is done')
  t.equal(res.events.filter((e) => e.event === 'done').length, 1)
  t.equal(deltas.map((e) => e.data.content).join(''), done.data.content, 'the deltas add up to the reply')
  t.match(done.data, { session_id: sid, role: 'assistant' })
  const stored = await listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first')
  t.same(stored.at(-1), done.data, 'done carries the stored message')
  await assertExactBalance(t, system, u)
})

t.test('idempotent retries: recharge and send', async (t) => {
  const u = await user('idem')
  const first = await recharge(system, u, 300, 'recharge-key-1')
  t.equal(first.status, 200)
  const retry = await system.request('POST', '/api/billing/recharge', { token: u.token, body: { amount: 300 }, headers: { 'idempotency-key': 'recharge-key-1' } })
  t.same(retry.body, first.body, 'a retry returns the first answer')
  const burst = await Promise.all(Array.from({ length: 6 }, () => system.request('POST', '/api/billing/recharge', { token: u.token, body: { amount: 77 }, headers: { 'idempotency-key': 'recharge-key-2' } })))
  t.ok(burst.every((r) => r.status === 200), 'concurrent retries all succeed')
  u.recharged += 77
  t.equal(new Set(burst.map((r) => r.body.balance)).size, 1, 'concurrent retries all get the first answer')
  assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: u.token, body: { amount: 301 }, headers: { 'idempotency-key': 'recharge-key-1' } }), 409, 'idempotency_conflict', 'same key, other amount')
  const other = await user('idem-other')
  const theirs = await recharge(system, other, 5, 'recharge-key-1')
  t.equal(theirs.status, 200, 'keys are per user: another user may use the same key')
  t.equal(theirs.body.balance, SIGNUP_BONUS + 5)

  const sid = await createSession(system, u)
  const calls = sim.requests.length
  const sent = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'once only' }, headers: { 'idempotency-key': 'send-key-1' } })
  t.equal(sent.status, 200)
  const again = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'once only', role: 'user' }, headers: { 'idempotency-key': 'send-key-1' } })
  t.same(again.body, sent.body, 'a retried send returns the first reply')
  const streamedRetry = await sendStreaming(system, u.token, sid, 'once only', { key: 'send-key-1' })
  t.same(streamedRetry.events.at(-1)?.data, sent.body, 'a streamed retry replays the same reply')
  t.equal(sim.requests.length, calls + 1, 'the LLM was called once')
  assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'something else' }, headers: { 'idempotency-key': 'send-key-1' } }), 409, 'idempotency_conflict', 'same key, other content')
  // The key's record expired and was swept (CHAT_IDEMPOTENCY_TTL_HOURS): the charged exchange still holds the key.
  const db = new pg.Client({ connectionString: system.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  t.equal((await db.query("DELETE FROM chat.idempotency_keys WHERE key = 'send-key-1'")).rowCount, 1)
  t.same((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'once only' }, headers: { 'idempotency-key': 'send-key-1' } })).body, sent.body, 'a retry after the key expired replays')
  await db.query("DELETE FROM chat.idempotency_keys WHERE key = 'send-key-1'")
  assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'something else' }, headers: { 'idempotency-key': 'send-key-1' } }), 409, 'idempotency_conflict', 'expired key, other content')
  t.equal(sim.requests.length, calls + 1, 'the LLM was still called once')
  t.equal((await listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first')).length, 2, 'one exchange stored')
  await assertExactBalance(t, system, u)
  await assertExactBalance(t, system, other)
})

t.test('the journey: WeChat login → session → messages → balance and transactions agree → recharge → delete', async (t) => {
  wechat.codes.set('journey-code', { openid: 'openid-journey-b', unionid: 'union-b' })
  const login = await system.request('POST', '/api/auth/wechat-login', { body: { code: 'journey-code' } })
  t.equal(login.status, 200)
  const verify = await system.request('GET', '/api/auth/verify', { token: login.body.access_token })
  const u: User = { id: verify.body.user.id, email: '', password: '', token: login.body.access_token, recharged: 0 }
  users.push(u)
  t.equal(verify.body.user.tokens, SIGNUP_BONUS)
  const sid = await createSession(system, u, '旅程')
  const replies = []
  for (const content of ['你好', 'Tell me about the weather', '再说一遍']) {
    const r = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content } })
    t.equal(r.status, 200)
    replies.push(r.body)
  }
  const streamed = await sendStreaming(system, u.token, sid, 'and stream one')
  t.equal(streamed.events.at(-1)?.event, 'done')
  const messages = await listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first')
  t.equal(messages.length, 8)
  const usage = messages.reduce((s, m) => s + m.tokens, 0)
  await assertExactBalance(t, system, u, { usage })
  const txs = await listAll(system, u.token, '/api/billing/transactions')
  const usageRows = txs.filter((x) => x.change_amount < 0).reverse()
  t.equal(usageRows.length, 4, 'one usage row per exchange')
  for (let i = 0; i < 4; i++) {
    const prompt = messages[2 * i].tokens
    const completion = messages[2 * i + 1].tokens
    t.equal(usageRows[i].change_amount, -(prompt + completion), `exchange ${i + 1} charged its tokens`)
    t.match(usageRows[i].description, new RegExp(`对话消耗 · .+ · 输入 ${prompt} \\+ 输出 ${completion}`), 'the description says why')
  }
  const profile = await system.request('GET', '/api/user/profile', { token: u.token })
  t.equal(profile.body.tokens, SIGNUP_BONUS - usage, 'profile tokens = the balance')
  const top = await recharge(system, u, 5000)
  t.same(top.body, { message: '充值成功', balance: SIGNUP_BONUS - usage + 5000 })
  t.equal((await system.request('DELETE', `/api/sessions/${sid}`, { token: u.token })).status, 200)
  u.deletedUsage = usage
  t.same((await system.request('GET', '/api/sessions', { token: u.token })).body, [])
  await assertExactBalance(t, system, u)
  t.equal((await listAll(system, u.token, '/api/billing/transactions')).length, txs.length + 1, 'deleting a session keeps the billing history')
})

t.test('oversized body is 413 at the edge', async (t) => {
  const u = await user('big')
  const res = await system.request('PUT', '/api/user/profile', { token: u.token, body: { nickname: 'x', pad: 'p'.repeat(1_100_000) } })
  assertProblem(t, res, 413, 'payload_too_large')
})

t.test('afterwards: the ledger audit passes and every balance is exact', async (t) => {
  for (const u of users) await assertExactBalance(t, system, u)
  await assertAuditPasses(t, system)
  assertNoLeak(t, 'nothing', 'self-check')
})
