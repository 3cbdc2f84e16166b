// Streaming sends (SSE): deltas then done, errors as events, and a client hang-up that aborts the model at once.
import t from 'tap'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, parseSse } from '../helper.ts'

const SSE = { accept: 'text/event-stream' }

t.test('deltas arrive in order, then done with the stored message', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { words: 30, chunkSize: 7 } })
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'stream please', SSE)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  t.equal(res.headers['x-accel-buffering'], 'no')
  t.match(res.headers['cache-control'], /no-cache/)
  const events = parseSse(res.body)
  const deltas = events.slice(0, -1)
  t.ok(deltas.length > 5, 'many deltas')
  t.ok(deltas.every((e) => e.event === 'delta' && typeof e.data.content === 'string'))
  const done = events.at(-1)!
  t.equal(done.event, 'done')
  t.equal(deltas.map((e) => e.data.content).join(''), done.data.content, 'the deltas spell the reply')
  t.equal(done.data.role, 'assistant')
  const sent = s.llm.requests[0].body
  t.equal(sent.stream, true)
  t.same(sent.stream_options, { include_usage: true })
  const listed = (await s.app.inject({ method: 'GET', url: `/api/sessions/${session.id}/messages`, headers: s.auth(1) })).json()
  t.same(listed.at(-1), done.data, 'done carries the same object the JSON call and the list return')
  const usage = await s.deps.db.selectFrom('usage').selectAll().executeTakeFirstOrThrow()
  t.equal(usage.usage_source, 'provider')
  t.equal(usage.completion_tokens, done.data.tokens)
})

t.test('checks that fail before the stream starts answer as plain problems', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 0)
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'hi', SSE)
  t.equal(res.statusCode, 402)
  t.equal(res.headers['content-type'], 'application/problem+json')
  t.equal((await s.send(2, session.id, 'hi', SSE)).statusCode, 404)
})

t.test('an upstream error becomes an error event; nothing is charged', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { errorStatus: 503 } })
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'hi', SSE)
  t.equal(res.statusCode, 200, 'headers were already sent')
  const events = parseSse(res.body)
  t.equal(events.length, 1)
  t.equal(events[0].event, 'error')
  t.match(events[0].data, { status: 502, code: 'upstream_error', type: /upstream-error$/, request_id: String })
  t.equal((await s.deps.db.selectFrom('usage').selectAll().execute()).length, 0)
})

t.test('a stream cut mid-way: the partial reply is stored and charged by the local tokenizer', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { words: 40, cutAfterChunks: 4 } })
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const res = await s.send(1, session.id, 'hi', SSE)
  const events = parseSse(res.body)
  t.same(events.map((e) => e.event), ['delta', 'delta', 'delta', 'delta', 'error'])
  t.equal(events.at(-1)!.data.code, 'upstream_error')
  const partial = events.slice(0, 4).map((e) => e.data.content).join('')
  const reply = await s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'assistant').executeTakeFirstOrThrow()
  t.equal(reply.content, partial)
  t.equal(reply.status, 'partial')
  const usage = await s.deps.db.selectFrom('usage').selectAll().executeTakeFirstOrThrow()
  t.equal(usage.usage_source, 'estimated')
  t.equal(usage.completion_tokens, s.deps.tokenizer.count(partial))
  t.equal(reply.tokens, usage.completion_tokens)
})

t.test('a provider that reports no usage: estimated by the local tokenizer (JSON and SSE)', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { omitUsage: true } })
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const json = (await s.send(1, session.id, 'count me')).json()
  t.equal(json.tokens, s.deps.tokenizer.count(json.content))
  const done = parseSse((await s.send(1, session.id, 'and me', SSE)).body).at(-1)!
  t.equal(done.event, 'done')
  t.equal(done.data.tokens, s.deps.tokenizer.count(done.data.content))
  const rows = await s.deps.db.selectFrom('usage').selectAll().orderBy('occurred_at').execute()
  t.same(rows.map((r) => r.usage_source), ['estimated', 'estimated'])
  const userMsgs = await s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'user').orderBy('id').execute()
  t.same(userMsgs.map((m) => m.tokens), rows.map((r) => r.prompt_tokens), 'prompt tokens estimated and stored on the user message')
  t.equal(userMsgs[0].tokens, s.deps.tokenizer.countPrompt([{ role: 'system', content: s.config.CHAT_SYSTEM_PROMPT }, { role: 'user', content: 'count me' }]))
})

t.test('the client hanging up aborts the upstream request; the partial reply is stored and charged as estimated', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { words: 2000, chunkDelayMs: 5 } })
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  await s.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = s.app.server.address() as AddressInfo
  const body = JSON.stringify({ content: 'tell me a long story' })
  let received = ''
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: `/api/sessions/${session.id}/messages`, headers: { ...s.auth(1), ...SSE, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      t.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8')
      res.on('data', (chunk) => {
        received += chunk
        if ((received.match(/event: delta/g) ?? []).length >= 3) { req.destroy(); resolve() }
      })
      res.on('error', () => {})
    })
    req.on('error', () => {})
    req.on('close', () => resolve())
    setImmediate(() => req.end(body))
    req.on('error', reject)
  })
  await waitFor(() => s.llm.aborts() === 1, { what: 'the fake provider sees the abort' })
  t.notOk(s.llm.requests[0].finished, 'the model did not finish the story')
  const reply = (await waitFor(() => s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'assistant').executeTakeFirst(), { what: 'partial reply stored' }))!
  t.equal(reply.status, 'partial')
  t.ok(reply.content.length > 0)
  t.ok(reply.content.startsWith(parseSse(received.slice(0, received.lastIndexOf('\n\n') + 2)).map((e) => e.data.content).join('')), 'stored at least what the client saw')
  const usage = await s.deps.db.selectFrom('usage').selectAll().executeTakeFirstOrThrow()
  t.equal(usage.usage_source, 'estimated')
  t.equal(usage.completion_tokens, s.deps.tokenizer.count(reply.content))
  t.equal(reply.tokens, usage.completion_tokens)
  const user = await s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'user').executeTakeFirstOrThrow()
  t.equal(user.status, 'ok')
  t.equal(user.tokens, usage.prompt_tokens)
  await waitFor(async () => (await s.usageEvents()).length === 1, { what: 'usage event' })
})
