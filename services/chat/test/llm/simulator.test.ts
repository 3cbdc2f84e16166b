// The offline simulator: chat with no OPENAI_API_KEY works through the real SDK path and says it is simulated.
import t from 'tap'
import OpenAI from 'openai'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, parseSse } from '../helper.ts'
import { startSimulator } from '../../src/llm/simulator.ts'

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

t.test('speaks the OpenAI wire protocol to the official SDK', async (t) => {
  const sim = await startSimulator({ reply: 'Hello there, friend.', chunkSize: 5 })
  t.teardown(() => sim.close())
  const client = new OpenAI({ apiKey: 'x', baseURL: sim.url, maxRetries: 0 })
  const messages = [{ role: 'user' as const, content: 'hi' }]
  const json = await client.chat.completions.create({ model: 'm', messages })
  t.equal(json.choices[0].message.content, 'Hello there, friend.')
  t.equal(json.choices[0].finish_reason, 'stop')
  t.ok(json.usage!.prompt_tokens > 0)
  const stream = await client.chat.completions.create({ model: 'm', messages, stream: true, stream_options: { include_usage: true } })
  let text = ''
  let usage
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? ''
    if (chunk.usage) usage = chunk.usage
  }
  t.equal(text, 'Hello there, friend.')
  t.same(usage, json.usage)

  sim.reset({ errorStatus: 429 })
  const err = await client.chat.completions.create({ model: 'm', messages }).catch((e: unknown) => e)
  t.ok(err instanceof OpenAI.APIError && err.status === 429, 'error statuses reach the SDK')
  sim.reset({ omitUsage: true })
  t.notOk((await client.chat.completions.create({ model: 'm', messages })).usage)
})

t.test('honours max_tokens like a provider: the text is cut, finish_reason "length", completion tokens capped', async (t) => {
  const sim = await startSimulator({ words: 200 })
  t.teardown(() => sim.close())
  const client = new OpenAI({ apiKey: 'x', baseURL: sim.url, maxRetries: 0 })
  const messages = [{ role: 'user' as const, content: 'hi' }]
  const json = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 10 })
  t.equal(json.choices[0].finish_reason, 'length')
  t.equal(json.usage!.completion_tokens, 10)
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 10, stream: true, stream_options: { include_usage: true } })
  let text = ''
  let finish
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
  }
  t.equal(text, json.choices[0].message.content)
  t.equal(finish, 'length')
  const whole = await client.chat.completions.create({ model: 'gpt-4o-mini', messages })
  t.ok(whole.usage!.completion_tokens > 100, 'without max_tokens the whole reply')
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
