// The bounded overdraft through the real processes (DESIGN §3, issue #12 items 1 and 6): whatever billing is doing
// (stopped, behind, its NATS link cut, NATS itself stopped, its Redis copy deleted), a user sending one message after
// another or side by side across two chat replicas gets at most the exchanges that reach zero plus CHAT_MAX_INFLIGHT,
// then 402; once everything settles the balance is bonus − Σ charges and billing:audit is clean. A Postgres cut
// right after the model answered is charged once the database is back, exactly once.
import t, { type Test } from 'tap'
import pg from 'pg'
import { balanceCacheKey, decodeBalanceCache } from '@chat-platform/contracts'
import { createRedis } from '@chat-platform/platform'
import { startPrivateNats, waitFor, TEST_PG_URL } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from '../support/system.ts'
import { startTcpProxy } from '../support/tcp-proxy.ts'
import { assertAuditPasses, createSession, listAll, pricedUsage, registerUser, type User } from '../support/client.ts'

t.setTimeout(180_000)

const BONUS = 100
const PROMPT = 15
const COMPLETION = 10
const COST = PROMPT + COMPLETION
/** Exchanges it takes to bring BONUS to ≤ 0. */
const NEEDED = Math.ceil(BONUS / COST)
const MAX_INFLIGHT = 2

const pgUrl = new URL(TEST_PG_URL)
// Every exchange costs exactly COST (the provider's reported usage), so the counts below are exact.
const sim = await startSimulator({ usage: { prompt_tokens: PROMPT, completion_tokens: COMPLETION }, latencyMs: 20 })
t.teardown(() => sim.close())
const nats = await startPrivateNats(t)
// Billing reaches NATS through a link the test can cut (billing falls behind: its consumer gets nothing).
const billingNats = await startTcpProxy(t, { host: '127.0.0.1', port: nats.port })
const chatPg = await startTcpProxy(t, { host: pgUrl.hostname, port: Number(pgUrl.port || 5432) })
const system = await startSystem(t, {
  natsUrl: nats.url,
  databaseVia: { chat: chatPg },
  replicas: { chat: 1 },
  startTimeoutMs: 120_000,
  env: {
    OPENAI_BASE_URL: sim.url,
    OPENAI_API_KEY: 'sk-e2e',
    SIGNUP_BONUS: String(BONUS),
    CHAT_MAX_INFLIGHT: String(MAX_INFLIGHT),
    AUTH_RATE_LIMIT_MAX: '1000',
    RATE_LIMIT_MAX: '5000',
    BILLING_ACK_WAIT_MS: '3000',
    BILLING_RETRY_DELAY_MS: '300'
  },
  procEnv: { billing: { NATS_URL: `nats://127.0.0.1:${billingNats.port}` } }
})
const redis = createRedis({ url: system.env.REDIS_URL, prefix: system.env.REDIS_PREFIX })
t.teardown(() => redis.disconnect())
const db = new pg.Client({ connectionString: system.databaseUrl })
await db.connect()
t.teardown(() => db.end())

const chats = system.instances('chat').map((p) => p.url)
t.equal(chats.length, 2, 'two chat replicas')

/** A user with the bonus, billing's copy of it in Redis, and a session. */
async function readyUser (tag: string): Promise<User & { sid: number }> {
  const u = await registerUser(system, tag)
  await waitFor(async () => decodeBalanceCache(await redis.get(balanceCacheKey(u.id)))?.balance === BONUS, { what: `${tag}: billing's copy` })
  return { ...u, sid: await createSession(system, u, tag) }
}

/** One send straight to a chat replica (n picks which): its status. */
async function send (u: User & { sid: number }, n: number): Promise<number> {
  const res = await fetch(`${chats[n % chats.length]}/api/sessions/${u.sid}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${u.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ content: `message ${n}` })
  })
  await res.arrayBuffer()
  return res.status
}

const count = (codes: number[], code: number) => codes.filter((c) => c === code).length

/** Waits for billing to apply everything, then: balance = bonus − accepted × COST, the messages agree, and a send is 402. */
async function settled (t: Test, u: User & { sid: number }, accepted: number) {
  const expected = BONUS + u.recharged - accepted * COST
  await waitFor(async () => (await system.request('GET', '/api/user/balance', { token: u.token })).body?.balance === expected, { timeoutMs: 60_000, what: `user ${u.id}: balance ${expected}` })
  t.equal(await pricedUsage(system, u), accepted * COST, `user ${u.id}: the messages' tokens are the charges`)
  const usageRows = (await listAll(system, u.token, '/api/billing/transactions')).filter((x) => x.change_amount < 0)
  t.equal(usageRows.length, accepted, `user ${u.id}: one ledger row per accepted exchange`)
  t.equal(await send(u, 0), 402, `user ${u.id}: 402 once the balance is used up`)
}

/**
 * Under `fault`, one user sends one message after another (alternating replicas) and another sends waves side
 * by side; `deleteCopy` deletes billing's Redis copy before every send or wave.
 */
async function bounded (t: Test, tag: string, fault: { start: () => Promise<void>, end: () => Promise<void> }, opts: { deleteCopy?: boolean } = {}) {
  const one = await readyUser(`${tag}-seq`)
  const many = await readyUser(`${tag}-par`)
  const del = async (u: User) => { if (opts.deleteCopy) await redis.del(balanceCacheKey(u.id)) }
  let seq: number[] = []
  const par: number[] = []
  await fault.start()
  try {
    for (let i = 0; i < NEEDED + 4; i++) {
      await del(one)
      seq.push(await send(one, i))
    }
    for (let wave = 0; wave < 3; wave++) {
      await del(many)
      par.push(...await Promise.all(Array.from({ length: 8 }, (_, i) => send(many, i))))
    }
  } finally {
    await fault.end()
  }
  t.same(seq, [...Array(NEEDED).fill(200), ...Array(4).fill(402)], `one after another: ${NEEDED} exchanges reach ≤ 0, then 402 (${seq.join(' ')})`)
  seq = seq.filter((c) => c === 200)
  t.same(par.filter((c) => ![200, 402, 429].includes(c)), [], `side by side: only 200, 402 or 429 (${par.join(' ')})`)
  const accepted = count(par, 200)
  t.ok(accepted >= 1 && accepted <= NEEDED + MAX_INFLIGHT, `side by side: ${accepted} accepted ≤ ${NEEDED} + CHAT_MAX_INFLIGHT`)
  await settled(t, one, seq.length)
  await settled(t, many, accepted)
  await assertAuditPasses(t, system)
}

const noop = async () => {}

t.test('billing stopped', async (t) => {
  await bounded(t, 'billing-stopped', { start: async () => { await system.stop('billing') }, end: async () => { await system.start('billing') } })
})

t.test('billing behind: its NATS link cut, so it applies nothing while users chat', async (t) => {
  await bounded(t, 'billing-behind', { start: async () => billingNats.cut(), end: async () => billingNats.restore() })
})

t.test('NATS stopped: chat\'s events wait in its outbox', async (t) => {
  await bounded(t, 'nats-stopped', { start: () => nats.stop(), end: () => nats.start() })
})

t.test('billing\'s Redis copy deleted before every send while billing is behind: its internal answer decides', async (t) => {
  await bounded(t, 'copy-deleted', { start: async () => billingNats.cut(), end: async () => billingNats.restore() }, { deleteCopy: true })
})

t.test('billing\'s Redis copy deleted with billing running', async (t) => {
  await bounded(t, 'copy-deleted-live', { start: noop, end: noop }, { deleteCopy: true })
})

t.test('Postgres cut after the model answered: the reply is charged once the database is back, exactly once', async (t) => {
  const u = await readyUser('pg-cut')
  let answer!: () => void
  sim.knobs.hold = new Promise<void>((resolve) => { answer = resolve })
  const asked = sim.requests.length
  const reply = send(u, 0)
  // The exchange is under way: the model was asked and the pending message is committed.
  await waitFor(() => sim.requests.length > asked, { what: 'the model asked' })
  await waitFor(async () => (await db.query('select 1 from chat.messages where user_id = $1 and status = \'pending\'', [u.id])).rowCount === 1, { what: 'pending message' })
  chatPg.cut()
  try {
    answer()
    sim.knobs.hold = undefined
    t.equal(await reply, 503, 'the reply could not be recorded yet')
  } finally {
    chatPg.restore()
  }
  await waitFor(async () => (await db.query('select 1 from chat.usage where user_id = $1', [u.id])).rowCount === 1, { timeoutMs: 30_000, what: 'the charge recorded' })
  const messages = await listAll(system, u.token, `/api/sessions/${u.sid}/messages`, 'oldest-first')
  t.same(messages.map((m) => [m.role, m.tokens]), [['user', PROMPT], ['assistant', COMPLETION]], 'the reply is stored')
  await waitFor(async () => (await system.request('GET', '/api/user/balance', { token: u.token })).body?.balance === BONUS - COST, { timeoutMs: 30_000, what: 'billing applied it' })
  // Exactly once: one usage row, one event applied, one ledger row, and chat's own total agrees.
  t.equal((await db.query('select 1 from chat.usage where user_id = $1', [u.id])).rowCount, 1)
  t.equal((await db.query('select 1 from billing.processed_events where user_id = $1 and amount is not null', [u.id])).rowCount, 1)
  t.same((await db.query('select recorded::int from chat.user_charges where user_id = $1', [u.id])).rows, [{ recorded: COST }])
  t.same((await db.query('select chat_applied::int from billing.accounts where user_id = $1', [u.id])).rows, [{ chat_applied: COST }])
  t.equal((await listAll(system, u.token, '/api/billing/transactions')).filter((x) => x.change_amount < 0).length, 1)
  t.equal((await db.query('select 1 from chat.messages where status = \'pending\'')).rowCount, 0, 'nothing left pending')
  await assertAuditPasses(t, system)
})
