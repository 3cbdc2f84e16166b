// The LLM provider failing, hanging, unreachable, cutting and stalling streams, leaving out usage, and a
// client hanging up mid-stream: the right problem (or SSE error event), and only generated output is charged.
import t, { type Test } from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from '../support/system.ts'
import { startTcpProxy } from '../support/tcp-proxy.ts'
import { assertAuditPasses, assertExactBalance, assertNoLeak, assertProblem, createSession, listAll, registerUser, sendStreaming, type SseReply, type User } from '../support/client.ts'

t.setTimeout(240_000)

const sim = await startSimulator()
t.teardown(() => sim.close())
const simUrl = new URL(sim.url)
const link = await startTcpProxy(t, { host: simUrl.hostname, port: Number(simUrl.port) })
const system = await startSystem(t, {
  env: {
    OPENAI_BASE_URL: `http://127.0.0.1:${link.port}/v1`,
    OPENAI_API_KEY: 'sk-e2e',
    CHAT_LLM_TIMEOUT_MS: '1500',
    CHAT_LLM_MAX_RETRIES: '0',
    AUTH_RATE_LIMIT_MAX: '1000'
  }
})
t.beforeEach(() => sim.reset())

const users: User[] = []
async function fresh (tag: string) {
  const u = await registerUser(system, tag)
  users.push(u)
  return { u, sid: await createSession(system, u, tag) }
}

const messagesOf = (u: User, sid: number) => listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first')

/** A streamed send that failed after the headers: 200, an `error` event last, carrying this problem code. */
function assertStreamError (t: Test, res: SseReply, code: string) {
  if (res.status !== 200) { assertProblem(t, { ...res, body: res.body }, res.status, code, 'streamed'); return }
  const last = res.events.at(-1)
  t.equal(last?.event, 'error', `streamed: ends with an error event (${res.raw.slice(-300)})`)
  t.equal(last?.data.code, code, `streamed: error code ${code}`)
  t.ok(last?.data.request_id && last?.data.title && last?.data.status, 'the error event carries a problem object')
  assertNoLeak(t, last?.data, 'error event')
  t.notOk(res.events.some((e) => e.event === 'done'), 'no done event')
}

t.test('the provider answers with an error: 502, nothing charged', async (t) => {
  const { u, sid } = await fresh('llm-500')
  for (const status of [500, 429, 400]) {
    sim.reset({ errorStatus: status })
    assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: `provider ${status}` } }), 502, 'upstream_error', `provider ${status}`)
    assertStreamError(t, await sendStreaming(system, u.token, sid, `streamed provider ${status}`), 'upstream_error')
  }
  const msgs = await messagesOf(u, sid)
  t.ok(msgs.every((m) => m.role === 'user' && m.tokens === 0), 'failed exchanges: user messages kept with 0 tokens, no replies')
  sim.reset()
  t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'recovered' } })).status, 200, 'works once the provider recovers')
  const after = await messagesOf(u, sid)
  t.notMatch(JSON.stringify(sim.requests.at(-1)?.body.messages), /provider 500/, 'failed messages are never sent to the model again')
  t.equal(after.at(-1).role, 'assistant')
  await assertExactBalance(t, system, u)
})

t.test('the provider hangs: 504 after the timeout, nothing charged, the call is abandoned', async (t) => {
  const { u, sid } = await fresh('llm-hang')
  sim.reset({ hang: true })
  const aborts = sim.aborts()
  assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'hello?' } }), 504, 'upstream_timeout')
  assertStreamError(t, await sendStreaming(system, u.token, sid, 'hello? (streamed)'), 'upstream_timeout')
  await waitFor(() => sim.aborts() >= aborts + 2, { what: 'chat hung up on the provider' })
  await assertExactBalance(t, system, u, { usage: 0 })
})

t.test('the provider cannot be reached: 503', async (t) => {
  const { u, sid } = await fresh('llm-down')
  link.cut()
  try {
    assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'anyone?' } }), 503, 'service_unavailable')
    assertStreamError(t, await sendStreaming(system, u.token, sid, 'anyone? (streamed)'), 'service_unavailable')
  } finally { link.restore() }
  t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'back?' } })).status, 200)
  await assertExactBalance(t, system, u)
})

t.test('the stream is cut mid-way: deltas, an error event, the partial reply stored and charged as estimated', async (t) => {
  const { u, sid } = await fresh('llm-cut')
  sim.reset({ words: 40, chunkSize: 6, cutAfterChunks: 3 })
  const res = await sendStreaming(system, u.token, sid, 'tell me everything')
  const deltas = res.events.filter((e) => e.event === 'delta')
  t.equal(deltas.length, 3, 'the three chunks reached the client')
  assertStreamError(t, res, 'upstream_error')
  const msgs = await messagesOf(u, sid)
  t.equal(msgs.length, 2)
  t.equal(msgs[1].content, deltas.map((e) => e.data.content).join(''), 'the partial reply is what the client saw')
  t.ok(msgs[0].tokens > 0 && msgs[1].tokens > 0, 'prompt and partial completion are counted')
  await assertExactBalance(t, system, u)
  const usageRow = (await listAll(system, u.token, '/api/billing/transactions')).find((x) => x.change_amount < 0)
  t.match(usageRow?.description, /估算/, 'the charge says it was estimated')
})

t.test('the stream stalls: upstream_timeout after the gap, the partial reply charged', async (t) => {
  const { u, sid } = await fresh('llm-stall')
  sim.reset({ words: 40, chunkSize: 6, stallAfterChunks: 2 })
  const res = await sendStreaming(system, u.token, sid, 'go slowly')
  t.equal(res.events.filter((e) => e.event === 'delta').length, 2)
  assertStreamError(t, res, 'upstream_timeout')
  const msgs = await messagesOf(u, sid)
  t.equal(msgs.length, 2, 'the partial reply is stored')
  await assertExactBalance(t, system, u)
})

t.test('no usage from the provider: counted locally and marked estimated', async (t) => {
  const { u, sid } = await fresh('llm-nousage')
  sim.reset({ omitUsage: true })
  const json = await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: 'count it yourself' } })
  t.equal(json.status, 200)
  t.ok(json.body.tokens > 0, 'the reply has estimated tokens')
  const streamed = await sendStreaming(system, u.token, sid, 'and this one')
  t.equal(streamed.events.at(-1)?.event, 'done')
  await assertExactBalance(t, system, u)
  const usageRows = (await listAll(system, u.token, '/api/billing/transactions')).filter((x) => x.change_amount < 0)
  t.equal(usageRows.length, 2)
  t.ok(usageRows.every((x) => /估算/.test(x.description)), 'both charges say estimated')
})

t.test('a client hangs up mid-stream: the model call stops, only what was generated is charged', async (t) => {
  const { u, sid } = await fresh('llm-hangup')
  sim.reset({ words: 400, chunkSize: 4, chunkDelayMs: 10 })
  const aborts = sim.aborts()
  const ac = new AbortController()
  let seen = 0
  await sendStreaming(system, u.token, sid, 'a very long answer please', { signal: ac.signal, onEvent: (e) => { if (e.event === 'delta' && ++seen === 5) ac.abort() } }).catch((err) => {
    if ((err as Error).name !== 'AbortError') throw err
  })
  await waitFor(() => sim.aborts() > aborts, { what: 'the provider call aborted' })
  const msgs = await waitFor(async () => { const m = await messagesOf(u, sid); return m.length === 2 && m[0].tokens > 0 ? m : null }, { what: 'the partial exchange recorded' }) as any[]
  t.ok(msgs[1].content.length > 0 && msgs[1].content.length < 1000, `a partial reply (${msgs[1].content.length} chars)`)
  await assertExactBalance(t, system, u)
})

t.test('afterwards: the ledger audit passes and every balance is exact', async (t) => {
  for (const u of users) await assertExactBalance(t, system, u)
  await assertAuditPasses(t, system)
})
