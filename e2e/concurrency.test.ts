// Concurrency invariants: many users recharging, chatting (JSON and SSE) and deleting sessions at once for a
// bounded time; afterwards the audit passes and each balance = bonus + recharges − priced usage, to the token.
import t from 'tap'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from './support/system.ts'
import { runTraffic } from './support/traffic.ts'
import { assertAuditPasses, assertExactBalance, createSession, recharge, registerUser, type User } from './support/client.ts'

t.setTimeout(240_000)

const USERS = Number(process.env.E2E_USERS ?? 10)
const sim = await startSimulator({ chunkDelayMs: 1 })
t.teardown(() => sim.close())
const system = await startSystem(t, {
  env: { OPENAI_BASE_URL: sim.url, OPENAI_API_KEY: 'sk-e2e', AUTH_RATE_LIMIT_MAX: '1000', RATE_LIMIT_MAX: '5000' }
})

const users: User[] = await Promise.all(Array.from({ length: USERS }, (_, i) => registerUser(system, `many${i}`)))

t.test('many users recharge, chat and delete sessions at once (bounded), and every token is accounted for', async (t) => {
  const result = await runTraffic(system, users, { opsPerWorker: 8, workersPerUser: 2, maxMs: 45_000, deleteEvery: 5 })
  t.same(result.unexpected, [], 'no 500s, no dropped connections')
  t.same(result.pending, [], 'every recharge answered')
  t.ok((result.statuses['send 200'] ?? 0) > 0 && (result.statuses['stream 200'] ?? 0) > 0 && (result.statuses['recharge 200'] ?? 0) > 0, `all kinds of operations succeeded: ${JSON.stringify(result.statuses)}`)
  t.notOk(result.statuses['send 429'] || result.statuses['stream 429'], 'two workers per user never exceed CHAT_MAX_INFLIGHT (2)')
  for (const u of users) await assertExactBalance(t, system, u, { timeoutMs: 60_000 })
  await assertAuditPasses(t, system)
})

t.test('one account hit by recharges and sends at the same instant', async (t) => {
  const u = users[0]
  const sid = await createSession(system, u, 'one account')
  const ops = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => recharge(system, u, 10 + i)),
    ...Array.from({ length: 2 }, (_, i) => system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: `at once ${i}` } }))
  ])
  t.ok(ops.every((r) => r.status === 200), 'all answered 200')
  await assertExactBalance(t, system, u)
  await assertAuditPasses(t, system)
})
