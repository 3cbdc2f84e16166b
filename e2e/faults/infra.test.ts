// Faults of our own infrastructure under traffic: billing killed and restarted, NATS stopped and restarted,
// Postgres unreachable for one service, Redis stopped and partitioned. Each ends with the ledger audit
// passing and every balance exact to the token. E2E_QUICK=1 skips the slowest (billing kill, NATS stop).
import t, { type Test } from 'tap'
import { startPrivateNats, startPrivateRedis, TEST_PG_URL, waitFor } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from '../support/system.ts'
import { startTcpProxy } from '../support/tcp-proxy.ts'
import { runTraffic, settleRecharges } from '../support/traffic.ts'
import { assertAuditPasses, assertExactBalance, assertNoLeak, assertProblem, createSession, listAll, recharge, registerUser, type User } from '../support/client.ts'

t.setTimeout(300_000)
const quick = !!process.env.E2E_QUICK
const slow = { skip: quick ? 'E2E_QUICK: slow fault test' : false }

const pg = new URL(TEST_PG_URL)
const sim = await startSimulator({ chunkDelayMs: 2 })
t.teardown(() => sim.close())
const nats = await startPrivateNats(t)
const redis = await startPrivateRedis(t)
const redisLink = await startTcpProxy(t, { host: '127.0.0.1', port: redis.port })
const chatPg = await startTcpProxy(t, { host: pg.hostname, port: Number(pg.port || 5432) })
const billingPg = await startTcpProxy(t, { host: pg.hostname, port: Number(pg.port || 5432) })
const system = await startSystem(t, {
  natsUrl: nats.url,
  redisUrl: `redis://127.0.0.1:${redisLink.port}`,
  databaseVia: { chat: chatPg, billing: billingPg },
  env: {
    OPENAI_BASE_URL: sim.url,
    OPENAI_API_KEY: 'sk-e2e',
    AUTH_RATE_LIMIT_MAX: '1000',
    RATE_LIMIT_MAX: '5000',
    BILLING_ACK_WAIT_MS: '3000',
    BILLING_RETRY_DELAY_MS: '300'
  }
})

const users: User[] = []
for (let i = 0; i < 4; i++) {
  const u = await registerUser(system, `fault${i}`)
  // Enough to keep chatting through every test (402 would hide what the faults do).
  await recharge(system, u, 200_000)
  users.push(u)
}

async function settleAndCheck (t: Test) {
  for (const u of users) await assertExactBalance(t, system, u, { timeoutMs: 60_000 })
  await assertAuditPasses(t, system)
}

/** Runs traffic; `fault` is called once `after` operations have completed and awaited before the traffic ends. */
async function trafficWithFault (t: Test, after: number, fault: (progress: () => number) => Promise<void>) {
  let ops = 0
  let faultRun: Promise<void> | undefined
  const traffic = runTraffic(system, users, {
    opsPerWorker: 10,
    workersPerUser: 2,
    maxMs: 60_000,
    onOp: (n) => { ops = n; if (n === after) faultRun = fault(() => ops) }
  })
  const result = await traffic
  await faultRun
  t.same(result.unexpected, [], 'no unexpected answer (500s, dropped connections)')
  t.ok(result.ops >= after, `traffic ran (${result.ops} operations: ${JSON.stringify(result.statuses)})`)
  await settleRecharges(system, result.pending)
  return result
}

t.test('billing killed (SIGKILL) mid-traffic and restarted', slow, async (t) => {
  const res = await trafficWithFault(t, 6, async (progress) => {
    await system.stop('billing', 'SIGKILL')
    const at = progress()
    await waitFor(() => progress() >= at + 10, { timeoutMs: 60_000, what: 'traffic while billing is down' })
    await system.start('billing')
  })
  t.ok(Object.keys(res.statuses).some((k) => /^(send|stream) 200$/.test(k)), 'users kept chatting')
  await settleAndCheck(t)
})

t.test('NATS stopped while users chat, then restarted', slow, async (t) => {
  const res = await trafficWithFault(t, 4, async (progress) => {
    await nats.stop()
    const at = progress()
    await waitFor(() => progress() >= at + 12, { timeoutMs: 60_000, what: 'traffic while NATS is down' })
    // A user who registers now: the event waits in auth's outbox; the balance is readable at once anyway.
    const late = await registerUser(system, 'nats-down')
    users.push(late)
    const bal = await system.request('GET', '/api/user/balance', { token: late.token })
    t.equal(bal.body.balance, 1000, 'a new user has the bonus while NATS is down')
    t.equal((await recharge(system, late, 200_000)).status, 200, 'recharge while NATS is down')
    await nats.start()
  })
  t.ok((res.statuses['send 200'] ?? 0) + (res.statuses['stream 200'] ?? 0) > 0, 'chat kept answering')
  await settleAndCheck(t)
})

t.test('Postgres unreachable for chat: its requests fail cleanly with 503, nothing half-written', async (t) => {
  const u = users[0]
  const sid = await createSession(system, u, 'pg-cut')
  t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'before the cut' } })).status, 200)
  const before = await listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first')
  chatPg.cut()
  try {
    const calls = sim.requests.length
    assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'during the cut' } }), 503, 'service_unavailable', 'send')
    const streamed = await fetch(`${system.gatewayUrl}/api/sessions/${sid}/messages`, { method: 'POST', headers: { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ content: 'streamed during the cut' }) })
    const streamedBody = await streamed.text()
    t.equal(streamed.status, 503, 'streamed send')
    assertNoLeak(t, streamedBody, 'streamed send')
    assertProblem(t, await system.request('POST', '/api/sessions', { token: u.token, body: { title: 'x' } }), 503, 'service_unavailable', 'create session')
    assertProblem(t, await system.request('GET', '/api/sessions', { token: u.token }), 503, 'service_unavailable', 'list sessions')
    assertProblem(t, await system.request('GET', `/api/sessions/${sid}/messages`, { token: u.token }), 503, 'service_unavailable', 'list messages')
    assertProblem(t, await system.request('DELETE', `/api/sessions/${sid}`, { token: u.token }), 503, 'service_unavailable', 'delete session')
    t.equal(sim.requests.length, calls, 'the LLM was not called')
    // Only chat is affected.
    t.equal((await system.request('GET', '/api/user/balance', { token: u.token })).status, 200, 'billing still answers')
    t.equal((await recharge(system, u, 10)).status, 200, 'recharge still works')
    t.equal((await system.request('GET', '/api/user/profile', { token: u.token })).status, 200, 'auth still answers')
  } finally { chatPg.restore() }
  await waitFor(async () => (await system.request('GET', '/api/sessions', { token: u.token })).status === 200, { timeoutMs: 20_000, what: 'chat back' })
  t.same(await listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first'), before, 'nothing was written during the cut')
  t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'after the cut' } })).status, 200, 'chat works again')
  await settleAndCheck(t)
})

t.test('Postgres unreachable for billing: recharge 503 and nothing credited; usage waits and is applied once', async (t) => {
  const u = users[1]
  const sid = await createSession(system, u, 'billing-pg-cut')
  billingPg.cut()
  try {
    const lost = await system.request('POST', '/api/billing/recharge', { token: u.token, body: { amount: 123 }, headers: { 'idempotency-key': 'during-billing-cut' } })
    assertProblem(t, lost, 503, 'service_unavailable', 'recharge')
    assertProblem(t, await system.request('GET', '/api/billing/transactions', { token: u.token }), 503, 'service_unavailable', 'transactions')
    const bal = await system.request('GET', '/api/user/balance', { token: u.token })
    t.ok(bal.status === 200 || bal.status === 503, `balance answers 200 or 503 (${bal.status})`)
    if (bal.status !== 200) assertProblem(t, bal, 503, 'service_unavailable', 'balance')
    // Chat keeps answering from billing's Redis copy of the balance; the usage events wait in JetStream.
    for (let i = 0; i < 3; i++) t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: `while billing's database is away ${i}` } })).status, 200)
  } finally { billingPg.restore() }
  // The lost recharge is retried with its key: credited exactly once.
  await waitFor(async () => (await recharge(system, u, 123, 'during-billing-cut')).status === 200, { timeoutMs: 20_000, what: 'recharge after the cut' })
  await settleAndCheck(t)
})

t.test('Redis stopped: throttling and the balance cache degrade, nothing breaks or charges wrongly', async (t) => {
  const u = users[2]
  const sid = await createSession(system, u, 'redis-down')
  await redis.stop()
  try {
    for (let i = 0; i < 12; i++) {
      assertProblem(t, await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: 'wrong-password' } }), 401, 'invalid_credentials', `failure ${i + 1} with throttling off`)
    }
    t.equal((await system.request('POST', '/api/auth/email-login', { body: { email: u.email, password: u.password } })).status, 200, 'the right password still logs in')
    const late = await registerUser(system, 'redis-down')
    users.push(late)
    t.equal((await system.request('GET', '/api/user/balance', { token: late.token })).body.balance, 1000, 'balance from Postgres')
    t.equal((await recharge(system, u, 40)).status, 200, 'recharge works')
    const replies = await Promise.all([0, 1, 2].map((i) => system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: `redis is down ${i}` } })))
    t.ok(replies.every((r) => r.status === 200 || r.status === 429), 'sends answer (the in-flight cap is kept in memory)')
    t.ok(replies.some((r) => r.status === 200), 'chat answers without Redis')
    await assertExactBalance(t, system, u)
    const profile = await system.request('GET', '/api/user/profile', { token: u.token })
    const balance = await system.request('GET', '/api/user/balance', { token: u.token })
    t.equal(profile.body.tokens, balance.body.balance, 'profile tokens = balance without Redis')
  } finally { await redis.start() }
  // Throttling is back once Redis is.
  await waitFor(async () => {
    const r = await system.request('POST', '/api/auth/email-login', { body: { email: users[3].email, password: 'wrong-password' } })
    return r.status === 429
  }, { timeoutMs: 30_000, intervalMs: 50, what: 'login throttling after Redis returns' })
  await settleAndCheck(t)
})

t.test('Redis partitioned away and back: the cached balance never disagrees with the ledger afterwards', async (t) => {
  const u = users[0]
  const sid = await createSession(system, u, 'redis-partition')
  await assertExactBalance(t, system, u)
  redisLink.cut()
  try {
    t.equal((await recharge(system, u, 500)).status, 200, 'recharge during the partition')
    t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'during the partition' } })).status, 200)
    await assertExactBalance(t, system, u)
  } finally { redisLink.restore() }
  await waitFor(async () => (await system.request('GET', '/readyz', { to: 'billing' })).status === 200, { timeoutMs: 20_000, what: 'billing sees Redis again' })
  const balance = (await system.request('GET', '/api/user/balance', { token: u.token })).body.balance
  const profile = await system.request('GET', '/api/user/profile', { token: u.token })
  t.equal(profile.body.tokens, balance, 'profile tokens = balance after the partition (no stale Redis copy)')
  const verify = await system.request('GET', '/api/auth/verify', { token: u.token })
  t.equal(verify.body.user.tokens, balance, 'verify tokens = balance after the partition')
  await settleAndCheck(t)
})
