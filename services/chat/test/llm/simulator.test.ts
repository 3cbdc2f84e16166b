// Chat's offline mode (packages/llm-simulator): with no OPENAI_API_KEY it answers through the real SDK path, says it is simulated and bills CHAT_MODEL.
import t from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, parseSse } from '../helper.ts'

t.test('with no key, the service answers through the built-in simulator', async (t) => {
  const s = await buildTestApp(t, {}, { builtInSimulator: true })
  t.ok(s.deps.simulator, 'simulator started')
  t.match(s.deps.simulator!.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/)
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const reply = (await s.send(1, session.id, '你好')).json()
  t.match(reply.content, /^\[simulated\] .*你好/)
  t.ok(reply.tokens > 0)
  const events = parseSse((await s.send(1, session.id, 'stream', { accept: 'text/event-stream' })).body)
  t.equal(events.at(-1)!.event, 'done')
  const usage = await s.deps.db.selectFrom('usage').selectAll().execute()
  t.same(usage.map((u) => u.usage_source), ['provider', 'provider'], 'the simulator reports usage like a provider')
  t.equal(s.llm.requests.length, 0, 'the test fake was not used')
})

t.test('the simulator bills under CHAT_MODEL and its usage events say they were simulated', async (t) => {
  const s = await buildTestApp(t, { CHAT_MODEL: 'gpt-4o', MODEL_PRICES: '{"gpt-4o":{"input":2,"output":3}}' }, { builtInSimulator: true })
  await s.seedBalance(1, 100_000)
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'bill me')).statusCode, 200)
  const events = await waitFor(async () => { const e = await s.usageEvents(); return e.length === 1 ? e : undefined }, { what: 'the usage event' })
  t.match(events![0], { model: 'gpt-4o', simulated: true })
  t.equal(events![0].estimated_amount, events![0].prompt_tokens * 2 + events![0].completion_tokens * 3, 'priced as the configured model')
  t.same((await s.deps.db.selectFrom('usage').select('model').execute()).map((u) => u.model), ['gpt-4o'])
})

t.test('a provider\'s usage events carry no simulated flag', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'real')).statusCode, 200)
  const events = await waitFor(async () => { const e = await s.usageEvents(); return e.length === 1 ? e : undefined }, { what: 'the usage event' })
  t.notOk('simulated' in events![0])
})

t.test('chat sends CHAT_MAX_OUTPUT_TOKENS (default 4096) as max_tokens', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'hi')).statusCode, 200)
  t.equal(s.llm.requests[0].body.max_tokens, 4096)
  const capped = await buildTestApp(t, { CHAT_MAX_OUTPUT_TOKENS: '5' }, { knobs: { words: 100 } })
  await capped.seedBalance(1, 1000)
  const s2 = await capped.createSession(1)
  const reply = (await capped.send(1, s2.id, 'hi')).json()
  t.equal(capped.llm.requests[0].body.max_tokens, 5)
  t.equal(reply.tokens, 5, 'the reply, and its charge, stop at the cap')
})
