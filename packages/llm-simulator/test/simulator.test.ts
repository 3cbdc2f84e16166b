// The simulator speaks the OpenAI chat completions protocol to the official SDK: JSON, SSE with usage, errors, max_tokens.
import t from 'tap'
import OpenAI from 'openai'
import { startSimulator } from '../src/simulator.ts'

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

t.test('errorTimes fails only the first requests since the last reset; errorHeaders go out with the error', async (t) => {
  const sim = await startSimulator({ reply: 'ok', errorStatus: 429, errorTimes: 2, errorHeaders: { 'retry-after': '7' } })
  t.teardown(() => sim.close())
  const client = new OpenAI({ apiKey: 'x', baseURL: sim.url, maxRetries: 0 })
  const ask = () => client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })
  for (let i = 0; i < 2; i++) {
    const err = await ask().then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof OpenAI.APIError && err.status === 429, `request ${i + 1} refused`)
    t.equal((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after'), '7')
  }
  t.equal((await ask()).choices[0].message.content, 'ok', 'the third is answered')
  sim.reset({ reply: 'again', errorStatus: 500, errorTimes: 1 })
  await t.rejects(ask(), 'the count starts over at a reset')
  t.equal((await ask()).choices[0].message.content, 'again')
})
