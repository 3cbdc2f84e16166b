// Failover with two fake providers on loopback: a call that failed before its first byte moves on, one that produced
// output never does; Retry-After, timeouts, the circuit breaker, and exactly one charge for the provider that answered.
import t, { type Test } from 'tap'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { freePort, waitFor } from '@chat-platform/platform/testing'
import { priceExchange } from '@chat-platform/contracts'
import { startSimulator, type Simulator, type SimulatorKnobs } from '@chat-platform/llm-simulator'
import { buildTestApp, parseSse, sample, type TestApp } from '../helper.ts'

const MODELS = [
  { id: 'm-main', name: 'Main', input_ratio: 2, output_ratio: 3, context_tokens: 16_000, default: true },
  { id: 'm-cheap', name: 'Cheap', input_ratio: 0.5, output_ratio: 1.25 }
]

interface Two { s: TestApp, first?: Simulator, second?: Simulator }

/** A chat app whose models are served by `first` then `second` (each a fake OpenAI, or nothing listening: `down`). */
async function twoProviders (t: Test, opts: { env?: Record<string, string>, first?: Partial<SimulatorKnobs> | 'down', second?: Partial<SimulatorKnobs> | 'down' } = {}): Promise<Two> {
  const start = async (k: Partial<SimulatorKnobs> | 'down' | undefined) => {
    if (k === 'down') return { url: `http://127.0.0.1:${await freePort()}/v1` }
    const sim = await startSimulator(k ?? {})
    t.teardown(() => sim.close())
    return { url: sim.url, sim }
  }
  const [a, b] = [await start(opts.first), await start(opts.second)]
  const providers = [
    { name: 'first', base_url: a.url, api_key: 'sk-first', models: ['m-main', 'm-cheap'] },
    { name: 'second', base_url: b.url, api_key: 'sk-second', models: ['m-main', 'm-cheap'] }
  ]
  const s = await buildTestApp(t, { CHAT_MODELS: JSON.stringify(MODELS), CHAT_PROVIDERS: JSON.stringify(providers), CHAT_LLM_TIMEOUT_MS: '1500', ...opts.env })
  await s.seedBalance(1, 100_000)
  return { s, first: a.sim, second: b.sim }
}

const usageRows = (s: TestApp) => s.deps.db.selectFrom('usage').selectAll().orderBy('message_id').execute()
const charged = async (s: TestApp) => Number((await s.deps.db.selectFrom('user_charges').select('recorded').where('user_id', '=', 1).executeTakeFirst())?.recorded ?? 0)

/** Exactly one usage row and one event for the exchange, priced with the model's own ratios. */
async function assertOneCharge (t: Test, s: TestApp, model: string) {
  const rows = await usageRows(s)
  t.equal(rows.length, 1, 'one usage row')
  t.equal(rows[0].model, model, 'provenance names the model')
  const ratios = MODELS.find((m) => m.id === model)!
  const price = priceExchange({ [model]: { input: ratios.input_ratio, output: ratios.output_ratio } }, model, rows[0].prompt_tokens, rows[0].completion_tokens)
  t.equal(Number(rows[0].estimated_amount), price, 'priced with the model\'s ratios')
  t.equal(await charged(s), price, 'admission counts exactly that charge')
  await waitFor(async () => await s.streamMessageCount() === 1, { what: 'the usage event is published' })
  const events = await s.usageEvents()
  t.equal(events.length, 1, 'one usage event')
  t.equal(events[0].model, model)
}

t.test('first provider down (connection refused): the second answers, one charge', async (t) => {
  const { s, second } = await twoProviders(t, { first: 'down', second: { usage: { prompt_tokens: 30, completion_tokens: 7 } } })
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'hello there')
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().tokens, 7)
  t.equal(second!.requests.length, 1)
  t.equal(second!.requests[0].body.model, 'm-main', 'the default model is asked')
  await assertOneCharge(t, s, 'm-main')
  t.equal(await sample(s, 'chat_llm_provider_failures_total', { provider: 'first', reason: 'connect' }), 1)
  t.equal(await sample(s, 'chat_llm_failovers_total', { provider: 'first', model: 'm-main', reason: 'connect' }), 1)
  t.equal(await sample(s, 'chat_llm_call_duration_seconds_count', { provider: 'second', outcome: 'ok' }), 1, 'latency per provider')
})

t.test('first provider answers 500: asked once (no SDK retry), the second answers, one charge', async (t) => {
  const { s, first, second } = await twoProviders(t, { first: { errorStatus: 500 } })
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'hello', { accept: 'text/event-stream' })
  t.equal(res.statusCode, 200)
  const events = parseSse(res.body)
  t.same(events.map((e) => e.event).filter((e) => e !== 'delta'), ['done'], 'the client never sees the failed attempt')
  t.match(events.filter((e) => e.event === 'delta').map((e) => e.data.content).join(''), /hello/)
  t.equal(first!.requests.length, 1, 'the failing provider got exactly one request')
  t.equal(second!.requests.length, 1)
  await assertOneCharge(t, s, 'm-main')
  t.equal(await sample(s, 'chat_llm_provider_failures_total', { provider: 'first', reason: 'server_error' }), 1)
})

t.test('a request the provider refuses (400) is not sent to the next one', async (t) => {
  const { s, first, second } = await twoProviders(t, { first: { errorStatus: 400 } })
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'hello')
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'upstream_error')
  t.equal(first!.requests.length, 1)
  t.equal(second!.requests.length, 0)
  t.equal((await usageRows(s)).length, 0, 'nothing charged')
})

t.test('429 with a short Retry-After: waited out on the same provider; a long one moves on and keeps it out', async (t) => {
  const { s, first, second } = await twoProviders(t, { first: { errorStatus: 429, errorTimes: 1, errorHeaders: { 'retry-after': '1' } } })
  const session = await s.createSession(1)
  const started = Date.now()
  const res = await s.send(1, session.id, 'patience')
  t.equal(res.statusCode, 200, res.body)
  t.ok(Date.now() - started >= 950, 'the Retry-After second was waited')
  t.equal(first!.requests.length, 2, 'the same provider, asked again after the wait')
  t.equal(second!.requests.length, 0)
  await assertOneCharge(t, s, 'm-main')

  first!.reset({ errorStatus: 429, errorHeaders: { 'retry-after': '120' } })
  const quick = Date.now()
  const moved = await s.send(1, session.id, 'in a hurry')
  t.equal(moved.statusCode, 200)
  t.ok(Date.now() - quick < 1500, 'a long Retry-After is not waited')
  t.equal(first!.requests.length, 3, 'asked once (requests are counted since the start)')
  t.equal(second!.requests.length, 1, 'the second answered')
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 2, 'kept out by its Retry-After: shown open, not healthy')
  first!.reset()
  t.equal((await s.send(1, session.id, 'again')).statusCode, 200)
  t.equal(first!.requests.length, 3, 'the first is left alone for its Retry-After')
  t.equal(second!.requests.length, 2)
  t.equal((await usageRows(s)).length, 3, 'one charge per exchange')
})

t.test('a huge Retry-After keeps the provider out at most CHAT_LLM_RETRY_AFTER_CAP_MS, then one probe brings it back', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_LLM_RETRY_AFTER_CAP_MS: '1000' }, first: { errorStatus: 429, errorTimes: 1, errorHeaders: { 'retry-after-ms': '1000000000000' } } })
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'one')).statusCode, 200)
  t.same([first!.requests.length, second!.requests.length], [1, 1], 'the 429 moved on to the second')
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 2, 'shown open while kept out')
  const keptOutAt = Date.now()
  t.equal((await s.send(1, session.id, 'two')).statusCode, 200)
  if (Date.now() - keptOutAt < 900) t.equal(first!.requests.length, 1, 'kept out within the cap')
  // After the cap (not 1e12 ms) the first provider is asked again and, answering, is closed.
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal((await s.send(1, session.id, 'three')).statusCode, 200)
  t.equal(first!.requests.length, 2, 'probed once the cap had passed')
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 0, 'the probe closed it')
  t.equal((await usageRows(s)).length, 3, 'one charge per exchange')
})

t.test('first provider hanging past the timeout: JSON and stream move on, one charge each', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_LLM_TIMEOUT_MS: '400' }, first: { hang: true } })
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'anyone?')
  t.equal(res.statusCode, 200, res.body)
  const streamed = await s.send(1, session.id, 'anyone streaming?', { accept: 'text/event-stream' })
  t.same(parseSse(streamed.body).map((e) => e.event).filter((e) => e !== 'delta'), ['done'])
  t.equal(first!.requests.length, 2)
  await waitFor(() => first!.aborts() === 2, { what: 'the hanging calls were given up' })
  t.equal(second!.requests.length, 2)
  t.equal((await usageRows(s)).length, 2)
  t.equal(await sample(s, 'chat_llm_provider_failures_total', { provider: 'first', reason: 'timeout' }), 2)
})

t.test('first provider cuts its stream after output: not retried, charged for what was produced (estimated)', async (t) => {
  const { s, first, second } = await twoProviders(t, { first: { words: 40, chunkSize: 6, cutAfterChunks: 3 } })
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'tell me a long story', { accept: 'text/event-stream' })
  const events = parseSse(res.body)
  const deltas = events.filter((e) => e.event === 'delta').map((e) => e.data.content).join('')
  t.ok(deltas.length > 0, 'output reached the client')
  t.equal(events.at(-1)!.event, 'error', 'then an error')
  t.equal(second!.requests.length, 0, 'never asked again elsewhere')
  t.equal(first!.requests.length, 1)
  const rows = await usageRows(s)
  t.equal(rows.length, 1)
  t.equal(rows[0].usage_source, 'estimated')
  t.equal(rows[0].completion_tokens, s.deps.tokenizer.count(deltas), 'charged for what was produced')
  const stored = await s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'assistant').execute()
  t.equal(stored[0].content, deltas)
  t.equal(stored[0].status, 'partial')
  t.equal(await sample(s, 'chat_llm_provider_failures_total', { provider: 'first', reason: 'cut' }), 1)
})

t.test('both providers down: 503, nothing charged, and 504 when both time out', async (t) => {
  t.test('connection refused', async (t) => {
    const { s } = await twoProviders(t, { first: 'down', second: 'down' })
    const session = await s.createSession(1)
    const res = await s.send(1, session.id, 'hello?')
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'service_unavailable')
    t.equal((await usageRows(s)).length, 0)
    t.equal(await charged(s), 0)
    t.equal(await s.streamMessageCount(), 0, 'no usage event')
    const stored = await s.deps.db.selectFrom('messages').selectAll().execute()
    t.same(stored.map((m) => [m.role, m.status]), [['user', 'failed']])
  })
  t.test('timeouts', async (t) => {
    const { s } = await twoProviders(t, { env: { CHAT_LLM_TIMEOUT_MS: '300' }, first: { hang: true }, second: { hang: true } })
    const session = await s.createSession(1)
    const res = await s.send(1, session.id, 'hello?', { accept: 'text/event-stream' })
    const events = parseSse(res.body)
    t.equal(events.at(-1)!.event, 'error')
    t.equal(events.at(-1)!.data.code, 'upstream_timeout')
    t.equal(events.at(-1)!.data.status, 504)
    t.equal((await usageRows(s)).length, 0)
  })
})

t.test('the circuit breaker opens after consecutive failures, skips the provider, and recovers through one probe', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_BREAKER_FAILURES: '2', CHAT_BREAKER_COOLDOWN_MS: '700' }, first: { errorStatus: 503 } })
  const session = await s.createSession(1)
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 0, 'closed at first')
  for (const m of ['one', 'two']) t.equal((await s.send(1, session.id, m)).statusCode, 200)
  t.equal(first!.requests.length, 2)
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 2, 'open after two failures')
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'second' }), 0)
  t.equal((await s.send(1, session.id, 'three')).statusCode, 200)
  t.equal(first!.requests.length, 2, 'an open circuit is skipped: no request')
  t.equal(second!.requests.length, 3)

  // Still failing after the cool-down: the probe fails, the circuit opens again at once.
  await new Promise((resolve) => setTimeout(resolve, 800))
  t.equal((await s.send(1, session.id, 'four')).statusCode, 200)
  t.equal(first!.requests.length, 3, 'one probe')
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 2, 'a failed probe opens it again')

  first!.reset()
  await new Promise((resolve) => setTimeout(resolve, 800))
  t.equal((await s.send(1, session.id, 'five')).statusCode, 200)
  t.equal(first!.requests.length, 4, 'the probe went to the first provider')
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 0, 'a successful probe closes it')
  t.equal(second!.requests.length, 4, 'the second was not needed')
  t.equal((await usageRows(s)).length, 5, 'one charge per exchange')
})

t.test('every provider\'s circuit open: 503 at once without calling anyone, nothing charged', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_BREAKER_FAILURES: '1', CHAT_BREAKER_COOLDOWN_MS: '60000' }, first: { errorStatus: 500 }, second: { errorStatus: 502 } })
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'one')).statusCode, 502, 'the last provider\'s error')
  const res = await s.send(1, session.id, 'two')
  t.equal(res.statusCode, 503)
  t.equal(first!.requests.length + second!.requests.length, 2, 'nobody was called for the second')
  t.equal((await usageRows(s)).length, 0)
})

t.test('CHAT_LLM_MAX_RETRIES: attempts after one round over the providers, from the first again', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_LLM_MAX_RETRIES: '1' }, first: { errorStatus: 500, errorTimes: 1 }, second: { errorStatus: 500 } })
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'third time lucky')
  t.equal(res.statusCode, 200)
  t.same([first!.requests.length, second!.requests.length], [2, 1], 'first, second, first again')
  t.equal((await usageRows(s)).length, 1)
})

t.test('a provider that timed out is not asked again by the retries of the same call', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_LLM_MAX_RETRIES: '2', CHAT_LLM_TIMEOUT_MS: '300' }, first: { hang: true }, second: { errorStatus: 500, errorTimes: 1 } })
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'slow and flaky')
  t.equal(res.statusCode, 200)
  t.same([first!.requests.length, second!.requests.length], [1, 2], 'first (timeout), second (500), second again; the first never twice')
  t.equal((await usageRows(s)).length, 1)
})

t.test('half-open under parallel sends: exactly one probe goes to the recovering provider, the rest fail over', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_BREAKER_FAILURES: '1', CHAT_BREAKER_COOLDOWN_MS: '500' }, first: { errorStatus: 500, errorTimes: 1 } })
  for (const u of [2, 3]) await s.seedBalance(u, 100_000)
  const sessions = await Promise.all([1, 2, 3].map((u) => s.createSession(u)))
  t.equal((await s.send(1, sessions[0].id, 'opens it')).statusCode, 200)
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 2)
  await new Promise((resolve) => setTimeout(resolve, 600))
  let release!: () => void
  first!.knobs.hold = new Promise<void>((resolve) => { release = resolve })
  const probe = s.send(1, sessions[0].id, 'probe')
  await waitFor(() => first!.requests.length === 2, { what: 'the probe reached the first provider' })
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 1, 'half-open while the probe runs')
  const others = await Promise.all([s.send(2, sessions[1].id, 'meanwhile'), s.send(3, sessions[2].id, 'meanwhile too')])
  t.same(others.map((r) => r.statusCode), [200, 200])
  t.equal(first!.requests.length, 2, 'no second probe while one is running')
  release()
  t.equal((await probe).statusCode, 200)
  t.equal(await sample(s, 'chat_llm_provider_state', { provider: 'first' }), 0, 'the probe closed it')
  t.equal(second!.requests.length, 3, 'the failed first call and the two sent meanwhile')
  t.equal((await usageRows(s)).length, 4, 'one charge per exchange')
})

t.test('a streaming client that leaves during a Retry-After wait ends the call at once: no further attempt, nothing charged', async (t) => {
  const { s, first, second } = await twoProviders(t, { env: { CHAT_LLM_RETRY_AFTER_MAX_MS: '5000' }, first: { errorStatus: 429, errorHeaders: { 'retry-after': '3' } } })
  const session = await s.createSession(1)
  await s.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = s.app.server.address() as AddressInfo
  const body = JSON.stringify({ content: 'I will not wait' })
  const req = request({ host: '127.0.0.1', port, method: 'POST', path: `/api/sessions/${session.id}/messages`, headers: { ...s.auth(1), accept: 'text/event-stream', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } })
  req.on('error', () => {})
  req.end(body)
  await waitFor(() => first!.requests.length === 1, { what: 'the first attempt got its 429' })
  const left = Date.now()
  req.destroy()
  const user = await waitFor(async () => {
    const m = await s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'user').executeTakeFirst()
    return m?.status === 'failed' ? m : undefined
  }, { what: 'the exchange ends as the client left', timeoutMs: 10_000 })
  t.ok(Date.now() - left < 2500, 'the Retry-After wait was cut short')
  t.equal(user!.error_code, 'client_closed')
  await new Promise((resolve) => setTimeout(resolve, 3200))
  t.equal(first!.requests.length, 1, 'not asked again after the wait')
  t.equal(second!.requests.length, 0)
  t.equal((await usageRows(s)).length, 0, 'nothing charged')
})
