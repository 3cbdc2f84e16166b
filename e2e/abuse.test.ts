// The system as an attacker meets it: BOLA, token forgery, mass assignment, SSRF-looking avatars, hostile
// bodies and queries, login brute force, a flood of sends, and no internals in any error body.
import { createHmac, generateKeyPairSync, randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { request as httpRequest } from 'node:http'
import pg from 'pg'
import t from 'tap'
import { signTestToken, testKeys, waitFor } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from './support/system.ts'
import { assertAuditPasses, assertExactBalance, assertNoLeak, assertProblem, createSession, listAll, registerUser, type User } from './support/client.ts'

t.setTimeout(240_000)

const sim = await startSimulator()
t.teardown(() => sim.close())
// A canary: any connection to it means some process fetched a URL it was only meant to store.
let canaryHits = 0
const canary = createServer((s) => { canaryHits++; s.destroy() })
await new Promise<void>((resolve) => canary.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise((resolve) => canary.close(resolve)))
const canaryPort = (canary.address() as { port: number }).port

// The per-IP limit on logins is raised a little so auth's own per-email throttling shows first; the last
// test floods past the edge limit.
const AUTH_RATE_LIMIT_MAX = 80
const system = await startSystem(t, {
  env: { OPENAI_BASE_URL: sim.url, OPENAI_API_KEY: 'sk-e2e', AUTH_RATE_LIMIT_MAX: String(AUTH_RATE_LIMIT_MAX) }
})
t.beforeEach(() => sim.reset())

const alice = await registerUser(system, 'alice')
const bob = await registerUser(system, 'bob')
const aliceSession = await createSession(system, alice, 'alice private')
t.equal((await system.request('POST', `/api/sessions/${aliceSession}/messages`, { token: alice.token, body: { content: 'my secret plans' } })).status, 200)

const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
const claims = (sub: number | string, extra: Record<string, unknown> = {}) => ({ sub: String(sub), iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600, iss: 'chat-platform', jti: randomUUID(), ...extra })

t.test('BOLA: another user\'s session ids are 404 on every session route', async (t) => {
  const before = await listAll(system, alice.token, `/api/sessions/${aliceSession}/messages`, 'oldest-first')
  const calls = sim.requests.length
  assertProblem(t, await system.request('GET', `/api/sessions/${aliceSession}/messages`, { token: bob.token }), 404, 'not_found', 'list messages')
  assertProblem(t, await system.request('POST', `/api/sessions/${aliceSession}/messages`, { token: bob.token, body: { content: 'hi' } }), 404, 'not_found', 'send')
  const streamed = await fetch(`${system.gatewayUrl}/api/sessions/${aliceSession}/messages`, { method: 'POST', headers: { authorization: `Bearer ${bob.token}`, 'content-type': 'application/json', accept: 'text/event-stream' }, body: '{"content":"hi"}' })
  t.equal(streamed.status, 404, 'streamed send')
  assertProblem(t, await system.request('DELETE', `/api/sessions/${aliceSession}`, { token: bob.token }), 404, 'not_found', 'delete')
  const missing = await system.request('DELETE', '/api/sessions/987654321', { token: bob.token })
  const theirs = await system.request('DELETE', `/api/sessions/${aliceSession}`, { token: bob.token })
  t.same({ ...missing.body, request_id: '', detail: '' }, { ...theirs.body, request_id: '', detail: '' }, 'someone else\'s session looks exactly like a missing one')
  // Identity headers from a client are never trusted.
  const spoofed = await system.request('GET', `/api/sessions/${aliceSession}/messages`, { token: bob.token, headers: { 'x-user-id': String(alice.id), 'x-forwarded-user': String(alice.id) } })
  t.equal(spoofed.status, 404, 'x-user-id spoofing')
  t.notOk((await system.request('GET', '/api/sessions', { token: bob.token })).body.some((s: { id: number }) => s.id === aliceSession), 'not in bob\'s list')
  t.ok((await listAll(system, bob.token, '/api/billing/transactions')).every((x) => x.user_id === bob.id), 'bob sees only his transactions')
  t.equal(sim.requests.length, calls, 'the LLM was never called for bob')
  t.same(await listAll(system, alice.token, `/api/sessions/${aliceSession}/messages`, 'oldest-first'), before, 'alice\'s session is untouched')
})

t.test('token forgery: every forged token is 401 on every kind of route', async (t) => {
  const payload = b64url(claims(alice.id))
  const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${payload}.`
  const hsInput = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${payload}`
  const hs256 = `${hsInput}.${createHmac('sha256', testKeys.publicKey).update(hsInput).digest('base64url')}`
  const [h, , s] = bob.token.split('.')
  const tampered = `${h}.${b64url({ ...JSON.parse(Buffer.from(bob.token.split('.')[1], 'base64url').toString()), sub: String(alice.id) })}.${s}`
  const expired = signTestToken(alice.id, {}, { expiresInMs: -60_000 })
  const otherKey = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const foreign = signTestToken(alice.id, {}, { privateKey: otherKey })
  const wrongIssuer = signTestToken(alice.id, {}, { issuer: 'someone-else' })
  const forged: [string, string][] = [['alg none', none], ['HS256 keyed with the public key', hs256], ['tampered payload', tampered], ['expired', expired],
    ['another key', foreign], ['wrong issuer', wrongIssuer], ['garbage', 'not.a.token'], ['empty', '']]
  const routes: [string, string, unknown?][] = [['GET', '/api/auth/verify'], ['GET', '/api/user/profile'], ['PUT', '/api/user/profile', { nickname: 'pwned' }],
    ['GET', '/api/user/balance'], ['POST', '/api/billing/recharge', { amount: 5 }], ['GET', '/api/billing/transactions'], ['GET', '/api/sessions'],
    ['POST', '/api/sessions', { title: 'x' }], ['GET', `/api/sessions/${aliceSession}/messages`], ['POST', `/api/sessions/${aliceSession}/messages`, { content: 'x' }],
    ['DELETE', `/api/sessions/${aliceSession}`]]
  for (const [why, token] of forged) {
    for (const [method, path, body] of routes) {
      const res = await system.request(method, path, { body, headers: { authorization: `Bearer ${token}` } })
      if (res.status !== 401) assertProblem(t, res, 401, 'unauthorized', `${why}: ${method} ${path}`)
      else t.equal(res.body.code, 'unauthorized', `${why}: ${method} ${path}`)
    }
  }
  const raw = await system.request('GET', '/api/user/profile', { headers: { authorization: alice.token } })
  assertProblem(t, raw, 401, 'unauthorized', 'a token without the Bearer scheme')
  t.equal(raw.headers.get('www-authenticate'), 'Bearer')
  t.match((await system.request('GET', '/api/user/profile', { token: alice.token })).body, { nickname: 'alice' }, 'nothing changed alice\'s profile')
  await assertExactBalance(t, system, alice)
})

t.test('a valid token for a user id that does not exist gets no money and no model', async (t) => {
  const ghost = signTestToken(2_000_000_001)
  const calls = sim.requests.length
  assertProblem(t, await system.request('GET', '/api/user/balance', { token: ghost }), 401, 'unauthorized', 'balance')
  assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: ghost, body: { amount: 5 } }), 401, 'unauthorized', 'recharge')
  assertProblem(t, await system.request('GET', '/api/auth/verify', { token: ghost }), 401, 'unauthorized', 'verify')
  // A session costs nothing; sending in it would, and is refused before the model is called.
  const session = await system.request('POST', '/api/sessions', { token: ghost, body: { title: 'ghost' } })
  t.equal(session.status, 200)
  assertProblem(t, await system.request('POST', `/api/sessions/${session.body.id}/messages`, { token: ghost, body: { content: 'free tokens?' } }), 401, 'unauthorized', 'send')
  t.equal(sim.requests.length, calls, 'the model was not called for a user that does not exist')
  t.equal(await system.internal.billing.balance(2000000001), null, 'billing opened no account for the ghost (404)')
})

t.test('mass assignment: unknown fields on register, profile, sessions, messages and recharge are ignored', async (t) => {
  const reg = await system.request('POST', '/api/auth/register', { body: { email: `mass-${randomUUID()}@e2e.test`, password: 'password-1', nickname: 'mass', id: 1, role: 'admin', tokens: 999_999, balance: 999_999, is_admin: true, created_at: '2000-01-01T00:00:00Z' } })
  t.equal(reg.status, 200)
  t.not(reg.body.user_id, 1, 'the id is not chosen by the client')
  const admin = await system.request('POST', '/api/billing/recharge', { token: (await system.request('POST', '/api/auth/email-login', { body: { email: reg.body.email ?? '', password: 'password-1' } })).body.access_token ?? '', body: { amount: 5, user_id: alice.id } })
  t.not(admin.status, 200, 'a role in the register body grants nothing')
  const before = await system.request('GET', '/api/user/profile', { token: bob.token })
  const put = await system.request('PUT', '/api/user/profile', {
    token: bob.token,
    body: { nickname: 'bobby', id: alice.id, user_id: alice.id, email: 'attacker@evil.test', tokens: 999_999, balance: 999_999, role: 'admin', password_hash: 'x', password: 'new-password-1', openid: 'o', created_at: '2000-01-01T00:00:00Z', updated_at: '2000-01-01T00:00:00Z' }
  })
  t.equal(put.status, 200)
  t.same({ ...put.body, updated_at: 0, nickname: 0 }, { ...before.body, updated_at: 0, nickname: 0 }, 'only nickname (and updated_at) changed')
  t.equal(put.body.nickname, 'bobby')
  t.equal((await system.request('POST', '/api/auth/email-login', { body: { email: bob.email, password: bob.password } })).status, 200, 'the old password still works')
  t.equal((await system.request('POST', '/api/auth/email-login', { body: { email: 'attacker@evil.test', password: 'new-password-1' } })).status, 401, 'the injected email/password do not')
  const s = await system.request('POST', '/api/sessions', { token: bob.token, body: { title: 'mine', user_id: alice.id, id: 1 } })
  t.equal(s.body.user_id, bob.id, 'a session belongs to the caller whatever the body says')
  const m = await system.request('POST', `/api/sessions/${s.body.id}/messages`, { token: bob.token, body: { content: 'hi', tokens: 0, session_id: aliceSession, user_id: alice.id } })
  t.equal(m.body.session_id, s.body.id, 'the message went to the path\'s session')
  t.ok(m.body.tokens > 0, 'tokens are counted, not taken from the body')
  await assertExactBalance(t, system, bob)
  await assertExactBalance(t, system, alice)
})

t.test('SSRF-looking avatar URLs are stored as text and never fetched', async (t) => {
  const urls = [`http://127.0.0.1:${canaryPort}/avatar.png`, `http://localhost:${canaryPort}/a`, 'http://169.254.169.254/latest/meta-data/iam/', `http://[::ffff:127.0.0.1]:${canaryPort}/`, 'http://metadata.google.internal/computeMetadata/v1/']
  for (const url of urls) {
    const put = await system.request('PUT', '/api/user/profile', { token: alice.token, body: { avatar_url: url } })
    t.equal(put.status, 200, `stored: ${url}`)
    t.equal(put.body.avatar_url, url)
    t.equal((await system.request('GET', '/api/auth/verify', { token: alice.token })).status, 200)
    t.equal((await system.request('GET', '/api/user/profile', { token: alice.token })).body.avatar_url, url, 'handed back as text')
  }
  await system.request('PUT', '/api/user/profile', { token: alice.token, body: { avatar_url: `http://127.0.0.1:${canaryPort}/avatar.png` } })
  t.equal(canaryHits, 0, 'nothing connected to the canary (checked again at the end of the file)')
})

t.test('hostile bodies and queries: malformed, oversized, deeply nested, wrong types, huge limits, bad amounts', async (t) => {
  const raw = async (method: string, path: string, body: string | Buffer, contentType = 'application/json') => {
    const res = await fetch(`${system.gatewayUrl}${path}`, { method, headers: { authorization: `Bearer ${alice.token}`, 'content-type': contentType }, body })
    const text = await res.text()
    let parsed: any = text
    try { parsed = JSON.parse(text) } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, body: parsed }
  }
  const sid = await createSession(system, alice, 'hostile')
  // Every field a route reads, nested 5,000 levels deep (arrays and objects).
  const nested = `${'['.repeat(5000)}${']'.repeat(5000)}`
  const deep = `{${['content', 'title', 'nickname', 'avatar_url', 'amount'].map((f, i) => `"${f}":${i % 2 ? nested : `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`}`).join(',')}}`
  for (const [path, method] of [['/api/user/profile', 'PUT'], ['/api/sessions', 'POST'], [`/api/sessions/${sid}/messages`, 'POST'], ['/api/billing/recharge', 'POST']]) {
    assertProblem(t, await raw(method, path, '{"content": "x",'), 400, 'validation_failed', `${path}: truncated JSON`)
    assertProblem(t, await raw(method, path, '{\'a\': 1}'), 400, 'validation_failed', `${path}: not JSON`)
    assertProblem(t, await raw(method, path, '[1, 2, 3]'), 400, 'validation_failed', `${path}: an array`)
    assertProblem(t, await raw(method, path, deep), 400, 'validation_failed', `${path}: deep nesting`)
    assertProblem(t, await raw(method, path, '{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"isAdmin":true}},"content":"x","amount":1}'), 400, 'validation_failed', `${path}: prototype pollution`)
    assertProblem(t, await raw(method, path, Buffer.alloc(2 * 1024 * 1024, 'a')), 413, 'payload_too_large', `${path}: 2 MiB`)
  }
  assertProblem(t, await raw('PUT', '/api/user/profile', 'nickname=x', 'application/x-www-form-urlencoded'), 400, 'validation_failed', 'a form body')
  assertProblem(t, await raw('POST', '/api/billing/recharge', '{"amount": 1e400}'), 400, 'validation_failed', 'amount 1e400')
  for (const [path, body, why] of [
    [`/api/sessions/${sid}/messages`, { content: 123 }, 'content a number'],
    [`/api/sessions/${sid}/messages`, { content: ['a'] }, 'content an array'],
    [`/api/sessions/${sid}/messages`, { content: { $gt: '' } }, 'content an object'],
    ['/api/sessions', { title: ['a'] }, 'title an array'],
    ['/api/billing/recharge', { amount: '100' }, 'amount a string'],
    ['/api/billing/recharge', { amount: -100 }, 'negative amount'],
    ['/api/billing/recharge', { amount: 0.5 }, 'float amount'],
    ['/api/billing/recharge', { amount: 10.000001 }, 'float amount near an integer'],
    ['/api/billing/recharge', { amount: Number.MAX_SAFE_INTEGER }, 'huge amount'],
    ['/api/billing/recharge', { amount: true }, 'amount a boolean'],
    ['/api/billing/recharge', { amount: 10, user_id: 'alice' }, 'user_id a string']
  ] as const) assertProblem(t, await system.request('POST', path, { token: alice.token, body }), 400, 'validation_failed', why)
  for (const q of ['limit=1000000000000', 'limit=99999999999999999999999999', 'limit=-1', 'limit=1e3', 'before_id=0', 'before_id=1e400', "before_id=1'%20OR%201=1--"]) {
    for (const path of ['/api/sessions', `/api/sessions/${sid}/messages`, '/api/billing/transactions']) {
      assertProblem(t, await system.request('GET', `${path}?${q}`, { token: alice.token }), 400, 'validation_failed', `${path}?${q}`)
    }
  }
  for (const id of ['0', '-1', '1.5', "1'%20OR%20'1'='1", '99999999999999999999', 'null']) {
    const res = await system.request('GET', `/api/sessions/${id}/messages`, { token: alice.token })
    t.ok(res.status === 400 || res.status === 404, `session id ${id}: 400 or 404 (${res.status})`)
    assertNoLeak(t, res.body, `session id ${id}`)
  }
  t.equal((await system.request('GET', '/readyz')).status, 200, 'every process is still up')
  await assertExactBalance(t, system, alice)
})

t.test('a flood of concurrent sends from one user is capped by CHAT_MAX_INFLIGHT (2)', async (t) => {
  const u: User = await registerUser(system, 'flood')
  const sid = await createSession(system, u, 'flood')
  let release!: () => void
  sim.reset({ hold: new Promise<void>((resolve) => { release = resolve }) })
  const calls = sim.requests.length
  const flood = Array.from({ length: 10 }, (_, i) => system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: `flood ${i}` } }))
  await waitFor(() => sim.requests.length >= calls + 2, { what: 'two exchanges reach the model' })
  const refused: Awaited<typeof flood[number]>[] = []
  // The refusals come back while the two exchanges are still held.
  await waitFor(async () => {
    refused.length = 0
    for (const p of flood) { const r = await Promise.race([p, null]); if (r) refused.push(r) }
    return refused.length >= 8
  }, { what: 'eight refusals' })
  for (const r of refused) {
    assertProblem(t, r, 429, 'rate_limited', 'over the in-flight cap')
    t.ok(r.headers.get('retry-after'), 'Retry-After')
  }
  release()
  const all = await Promise.all(flood)
  t.equal(all.filter((r) => r.status === 200).length, 2, 'two exchanges answered')
  t.equal(sim.requests.length, calls + 2, 'the model saw two calls')
  t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'after the flood' } })).status, 200, 'the slots are free again')
  await assertExactBalance(t, system, u)
})

t.test('login brute force: 429 with Retry-After, also for the right password, per email', async (t) => {
  const u = await registerUser(system, 'victim')
  const statuses: number[] = []
  let throttled: Awaited<ReturnType<typeof system.request>> | undefined
  for (let i = 0; i < 30 && !throttled; i++) {
    const res = await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: `guess-${i}-xx` } })
    statuses.push(res.status)
    if (res.status === 429) throttled = res
    else assertProblem(t, res, 401, 'invalid_credentials', `guess ${i}`)
  }
  t.ok(throttled, `guessing is throttled (after ${statuses.length - 1} failures)`)
  assertProblem(t, throttled!, 429, 'rate_limited', 'throttled')
  t.ok(Number(throttled!.headers.get('retry-after')) > 0, 'Retry-After in seconds')
  assertProblem(t, await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } }), 429, 'rate_limited', 'even the right password while blocked')
  t.equal((await system.request('POST', '/api/auth/email-login', { body: { email: alice.email, password: alice.password } })).status, 200, 'another account is not affected')
})

t.test('WeChat login without WeChat configured: 503', async (t) => {
  assertProblem(t, await system.request('POST', '/api/auth/wechat-login', { body: { code: 'any' } }), 503, 'service_unavailable')
})

t.test('the edge limit on logins per IP: a flood of logins to many emails ends in 429', async (t) => {
  let limited: Awaited<ReturnType<typeof system.request>> | undefined
  for (let i = 0; i < AUTH_RATE_LIMIT_MAX + 5 && !limited; i++) {
    const res = await system.request('POST', '/api/auth/email-login', { body: { email: `spray-${i}@e2e.test`, password: 'password-1' } })
    if (res.status === 429) limited = res
  }
  t.ok(limited, 'the gateway limits logins per IP')
  assertProblem(t, limited!, 429, 'rate_limited', 'edge limit')
  t.ok(Number(limited!.headers.get('retry-after')) > 0, 'Retry-After')
})

t.test('path spelling: with the public limit at 429, register spelled with dots, escapes or extra slashes and a valid token opens no account', async (t) => {
  t.equal((await system.request('POST', '/api/auth/register', { body: { email: 'plain@e2e.test', password: 'password-1', nickname: 'p' } })).status, 429, 'the plain path is limited (the flood above)')
  const spellings = ['/api/auth/./register', '/api/auth/%2e/register', '/api/auth/%2E/register', '/api/auth/x/../register', '/api/auth/x/%2e%2e/register',
    '/api//auth/register', '/api/auth/register/', '/api/auth%2Fregister', '/api/auth/%252e/register', '/api/auth/x/..\\register', '/api/auth/register;x']
  for (const [i, path] of spellings.entries()) {
    for (const authorization of [`Bearer ${alice.token}`, undefined]) {
      const body = JSON.stringify({ email: `spelling-${i}-${authorization ? 't' : 'n'}@e2e.test`, password: 'password-1', nickname: 's' })
      // node:http sends the target as written (fetch would normalise the dots away on the client).
      const res = await new Promise<{ status: number, body: string }>((resolve, reject) => {
        const url = new URL(system.gatewayUrl)
        const req = httpRequest({ host: url.hostname, port: url.port, method: 'POST', path, headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) } }, (r) => {
          let text = ''
          r.on('data', (c: Buffer) => { text += c })
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text }))
        })
        req.on('error', reject)
        req.end(body)
      })
      t.equal(res.status, 404, `${path} ${authorization ? 'with' : 'without'} a token`)
      t.equal(JSON.parse(res.body).code, 'not_found')
    }
  }
  const db = new pg.Client({ connectionString: system.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  const { rows } = await db.query("SELECT count(*)::int AS n FROM auth.users WHERE email LIKE 'spelling-%'")
  t.equal(rows[0].n, 0, 'no account was opened through any spelling')
})

t.test('afterwards: nothing fetched an avatar, the ledger audit passes, balances exact', async (t) => {
  await assertAuditPasses(t, system)
  for (const u of [alice, bob]) await assertExactBalance(t, system, u)
  t.equal(canaryHits, 0, 'the canary saw no connection')
  assertNoLeak(t, '{}', 'self-check')
})
