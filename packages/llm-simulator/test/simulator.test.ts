// The simulator speaks the OpenAI chat completions protocol to the official SDK: JSON, SSE with usage, errors, max_tokens.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
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

t.test('a stream\'s first token leaves at once, not after the rest of the reply is composed', async (t) => {
  // The simulator runs in another process, so each read of this raw socket shows what had been sent by then.
  const code = `import { startSimulator } from ${JSON.stringify(new URL('../src/simulator.ts', import.meta.url).href)}
const sim = await startSimulator({ words: 20000, chunkSize: 12 })
process.send(sim.url)
process.on('disconnect', () => { sim.close().then(() => process.exit(0)) })`
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(() => { child.kill() })
  const [url] = await once(child, 'message') as [string]
  const u = new URL(url)
  const socket = connect(Number(u.port), u.hostname)
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  const body = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] })
  socket.write(`POST ${u.pathname}/chat/completions HTTP/1.1\r\nhost: ${u.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  let first = ''
  // The status line and headers go out with the first chunk; wait for a read that holds a token.
  while (!/"content":"[^"]/.test(first)) first += ((await once(socket, 'data')) as [Buffer])[0].toString()
  t.equal(first.match(/"content":"[^"]/g)!.length, 1, 'the first token arrives alone')
  t.notMatch(first, /\[DONE\]/)
  let rest = ''
  socket.on('data', (b: Buffer) => { rest += b.toString() })
  await once(socket, 'end')
  t.ok(rest.match(/"content":"[^"]/g)!.length > 1000, 'the rest of the reply follows')
  t.match(rest, /data: \[DONE\]/)
})
