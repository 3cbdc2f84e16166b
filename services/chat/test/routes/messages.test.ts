// POST/GET …/messages as JSON: the reply and its tokens, listing, ownership, validation, the balance and
// in-flight checks, upstream failures, and what the prompt holds (system prompt, history, truncation).
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { freePort, waitFor } from '@chat-platform/platform/testing'
import { buildTestApp } from '../helper.ts'
import { inflightKey } from '../../src/inflight.ts'

const msgs = async (s: Awaited<ReturnType<typeof buildTestApp>>, userId: number, sessionId: number, q = '') =>
  s.app.inject({ method: 'GET', url: `/api/sessions/${sessionId}/messages${q}`, headers: s.auth(userId) })

t.test('send and list', async (t) => {
  const s = await buildTestApp(t, { CHAT_SYSTEM_PROMPT: 'You are the test bot.' }, { knobs: { usage: { prompt_tokens: 40, completion_tokens: 9 } } })
  await s.seedBalance(1, 500)
  const session = await s.createSession(1)

  const res = await s.send(1, session.id, 'What is 2+2?')
  t.equal(res.statusCode, 200)
  const reply = res.json()
  t.same(Object.keys(reply).sort(), ['content', 'created_at', 'id', 'role', 'session_id', 'superseded', 'tokens'])
  t.equal(reply.role, 'assistant')
  t.equal(reply.session_id, session.id)
  t.equal(reply.tokens, 9, 'the reply carries the completion tokens the provider reported')
  t.match(reply.content, /^\[simulated\] .*What is 2\+2\?/)
  t.match(reply.created_at, /Z$/)

  const sent = s.llm.requests[0].body
  t.equal(sent.model, 'gpt-4o-mini')
  t.same(sent.messages, [{ role: 'system', content: 'You are the test bot.' }, { role: 'user', content: 'What is 2+2?' }])

  const list = (await msgs(s, 1, session.id)).json()
  t.same(list.map((m: { role: string }) => m.role), ['user', 'assistant'], 'oldest first')
  t.equal(list[0].content, 'What is 2+2?')
  t.equal(list[0].tokens, 40, 'the user message carries the prompt tokens of its exchange')
  t.same(list[1], reply)

  const role = await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages`, headers: s.auth(1), payload: { content: 'hi', role: 'user' } })
  t.equal(role.statusCode, 200, 'role "user" is accepted')
  const second = s.llm.requests[1].body.messages
  t.same(second.map((m) => m.role), ['system', 'user', 'assistant', 'user'], 'history is sent')
  t.equal(second[2].content, reply.content)

  // Pagination: the newest `limit` before the cursor, oldest first.
  const all = (await msgs(s, 1, session.id)).json()
  t.equal(all.length, 4)
  const last2 = (await msgs(s, 1, session.id, '?limit=2')).json()
  t.same(last2.map((m: { id: number }) => m.id), all.slice(2).map((m: { id: number }) => m.id))
  const before = (await msgs(s, 1, session.id, `?limit=2&before_id=${all[2].id}`)).json()
  t.same(before.map((m: { id: number }) => m.id), all.slice(0, 2).map((m: { id: number }) => m.id))
  t.equal((await msgs(s, 1, session.id, '?limit=201')).statusCode, 400)
})

t.test('validation', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 500)
  const session = await s.createSession(1)
  const post = (payload: unknown) => s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages`, headers: s.auth(1), payload: payload as object })
  for (const [name, payload] of [
    ['role assistant', { content: 'hi', role: 'assistant' }],
    ['role system', { content: 'hi', role: 'system' }],
    ['empty content', { content: '' }],
    ['content too long', { content: 'x'.repeat(16_001) }],
    ['content missing', {}],
    ['content not a string', { content: 5 }]
  ] as const) {
    const res = await post(payload)
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'validation_failed', name)
    t.ok(Array.isArray(res.json().errors), name)
  }
  t.equal((await post({ content: 'x'.repeat(16_000) })).statusCode, 200, '16,000 characters are fine')
  t.equal((await s.app.inject({ method: 'POST', url: '/api/sessions/abc/messages', headers: s.auth(1), payload: { content: 'hi' } })).statusCode, 400)
  const badKey = await s.send(1, session.id, 'hi', { 'idempotency-key': 'x'.repeat(256) })
  t.equal(badKey.statusCode, 400, 'Idempotency-Key longer than 255')
  t.equal(s.llm.requests.length, 1, 'only the valid message reached the model')
  t.equal((await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages`, payload: { content: 'hi' } })).statusCode, 401)
})

t.test('another user\'s or a missing session is 404 on every message route, and the model is never called', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 500)
  await s.seedBalance(2, 500)
  const session = await s.createSession(1)
  for (const [user, id] of [[2, session.id], [1, 999_999]]) {
    const send = await s.send(user, id, 'hello')
    t.equal(send.statusCode, 404)
    t.equal(send.json().code, 'not_found')
    const list = await msgs(s, user, id)
    t.equal(list.statusCode, 404)
    t.equal(list.json().detail, send.json().detail, 'the same answer for both cases')
  }
  t.equal(s.llm.requests.length, 0)
  const stored = await s.deps.db.selectFrom('messages').select('id').execute()
  t.equal(stored.length, 0)
  for (const user of [1, 2]) t.equal(await s.deps.redis.zcard(inflightKey(user)), 0, `user ${user}: the slot a 404 took was given back`)
})

t.test('a missing session is 404 also when no in-flight slot is free (404 comes before 429)', async (t) => {
  const s = await buildTestApp(t, { CHAT_MAX_INFLIGHT: '1' })
  await s.seedBalance(1, 500)
  const session = await s.createSession(1)
  let open!: () => void
  s.llm.knobs.hold = new Promise<void>((resolve) => { open = resolve })
  const running = s.send(1, session.id, 'holds the only slot')
  await waitFor(() => s.llm.requests.length === 1, { what: 'the exchange in flight' })
  t.equal(await s.deps.redis.zcard(inflightKey(1)), 1, 'one slot held')
  const missing = await s.send(1, 999_999, 'hello')
  t.equal(missing.statusCode, 404)
  t.equal((await s.send(1, session.id, 'no slot')).statusCode, 429, 'the same user\'s own session: 429')
  open()
  t.equal((await running).statusCode, 200)
  t.equal(await s.deps.redis.zcard(inflightKey(1)), 0)
})

t.test('402 when the balance is ≤ 0, before the model is called', async (t) => {
  const s = await buildTestApp(t)
  const session = await s.createSession(5)
  for (const balance of [0, -12]) {
    await s.seedBalance(5, balance)
    const res = await s.send(5, session.id, 'hello')
    t.equal(res.statusCode, 402)
    t.equal(res.json().code, 'insufficient_balance')
  }
  t.equal(s.llm.requests.length, 0, 'LLM never called')
  t.equal((await msgs(s, 5, session.id)).json().length, 0, 'nothing stored')
  await s.seedBalance(5, 1)
  t.equal((await s.send(5, session.id, 'hello')).statusCode, 200)
})

t.test('without a cached balance, billing\'s internal endpoint decides; billing down is 503', async (t) => {
  const balances = new Map<number, number>([[7, 0], [8, 25]])
  const asked: string[] = []
  const billing = createServer((req, res) => {
    asked.push(req.url ?? '')
    const id = Number(/\/internal\/balances\/(\d+)$/.exec(req.url ?? '')?.[1])
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ user_id: id, balance: balances.get(id) ?? 1000, chat_applied: 0 }))
  })
  await new Promise<void>((resolve) => billing.listen(0, '127.0.0.1', resolve))
  t.teardown(() => billing.close())
  const s = await buildTestApp(t, { BILLING_URL: `http://127.0.0.1:${(billing.address() as AddressInfo).port}` })
  const s7 = await s.createSession(7)
  const s8 = await s.createSession(8)
  t.equal((await s.send(7, s7.id, 'hi')).statusCode, 402)
  t.equal((await s.send(8, s8.id, 'hi')).statusCode, 200)
  t.same(asked, ['/internal/balances/7', '/internal/balances/8'])

  const down = await buildTestApp(t, { BILLING_URL: `http://127.0.0.1:${await freePort()}` })
  const sd = await down.createSession(9)
  const res = await down.send(9, sd.id, 'hi')
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'service_unavailable')
  t.equal(down.llm.requests.length, 0)
})

t.test('429 over CHAT_MAX_INFLIGHT exchanges in flight, with Retry-After; the slots free up afterwards', async (t) => {
  const s = await buildTestApp(t, { CHAT_MAX_INFLIGHT: '2' })
  await s.seedBalance(3, 1000)
  await s.seedBalance(4, 1000)
  const session = await s.createSession(3)
  let open!: () => void
  s.llm.knobs.hold = new Promise<void>((resolve) => { open = resolve })
  const first = s.send(3, session.id, 'one')
  const second = s.send(3, session.id, 'two')
  await waitFor(() => s.llm.requests.length === 2, { what: 'two exchanges in flight' })
  const third = await s.send(3, session.id, 'three')
  t.equal(third.statusCode, 429)
  t.equal(third.json().code, 'rate_limited')
  t.ok(Number(third.headers['retry-after']) >= 1)
  t.equal(s.llm.requests.length, 2, 'the third never reached the model')
  const other = await s.createSession(4)
  const otherUser = s.send(4, other.id, 'not limited by user 3')
  await waitFor(() => s.llm.requests.length === 3, { what: 'another user is not limited' })
  open()
  t.same([(await first).statusCode, (await second).statusCode, (await otherUser).statusCode], [200, 200, 200])
  t.equal((await s.send(3, session.id, 'four')).statusCode, 200, 'slots released')
})

t.test('upstream failures map to 502/503/504, charge nothing, and leave no dangling turn', async (t) => {
  const cases: { name: string, env: Record<string, string>, knobs: object, status: number, code: string }[] = [
    { name: 'error answer', env: {}, knobs: { errorStatus: 500 }, status: 502, code: 'upstream_error' },
    { name: 'bad request answer', env: {}, knobs: { errorStatus: 400 }, status: 502, code: 'upstream_error' },
    { name: 'too slow', env: { CHAT_LLM_TIMEOUT_MS: '300' }, knobs: { hang: true }, status: 504, code: 'upstream_timeout' },
    { name: 'unreachable', env: { OPENAI_BASE_URL: 'unreachable' }, knobs: {}, status: 503, code: 'service_unavailable' }
  ]
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const env: Record<string, string> = { ...c.env }
      if (env.OPENAI_BASE_URL === 'unreachable') env.OPENAI_BASE_URL = `http://127.0.0.1:${await freePort()}/v1`
      const s = await buildTestApp(t, env, { knobs: c.knobs })
      await s.seedBalance(1, 1000)
      const session = await s.createSession(1)
      const res = await s.send(1, session.id, 'doomed question')
      t.equal(res.statusCode, c.status)
      t.equal(res.json().code, c.code)
      t.equal(res.headers['content-type'], 'application/problem+json')
      t.notMatch(res.body, /127\.0\.0\.1|stack|at /, 'no internals leak')

      const stored = await s.deps.db.selectFrom('messages').selectAll().execute()
      t.equal(stored.length, 1)
      t.equal(stored[0].status, 'failed')
      t.equal(stored[0].error_code, c.code, 'the stored message says what happened')
      t.equal(stored[0].tokens, 0)
      t.equal((await s.deps.db.selectFrom('usage').selectAll().execute()).length, 0, 'no usage recorded')
      t.equal((await s.deps.db.selectFrom('outbox').selectAll().execute()).length, 0, 'no usage event')

      if (c.env.OPENAI_BASE_URL) return
      s.llm.reset()
      t.equal((await s.send(1, session.id, 'second try')).statusCode, 200)
      const prompt = s.llm.requests.at(-1)!.body.messages
      t.same(prompt.filter((m) => m.role !== 'system').map((m) => m.content), ['second try'], 'the failed message is not sent again')
      t.equal((await msgs(s, 1, session.id)).json().length, 3, 'the failed message is still listed')
    })
  }
})

t.test('history is truncated to the context budget, newest turns kept', async (t) => {
  const s = await buildTestApp(t, { CHAT_CONTEXT_TOKENS: '150', CHAT_SYSTEM_PROMPT: 'Be brief.' }, { knobs: { reply: 'ok' } })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  const sent: string[] = []
  for (let i = 0; i < 8; i++) {
    const content = `message number ${i} ` + 'alpha beta gamma '.repeat(4)
    sent.push(content)
    t.equal((await s.send(1, session.id, content)).statusCode, 200)
  }
  const last = s.llm.requests.at(-1)!.body.messages
  t.same(last[0], { role: 'system', content: 'Be brief.' })
  t.same(last.at(-1), { role: 'user', content: sent[7] })
  const tokens = s.deps.tokenizer.countPrompt(last)
  t.ok(tokens <= 150, `prompt within budget (${tokens})`)
  const history = last.slice(1, -1)
  t.ok(history.length >= 2 && history.length < 14, `some but not all history (${history.length})`)
  // A contiguous suffix of the conversation: the newest turns, in order.
  const convo = sent.slice(0, 7).flatMap((c) => [{ role: 'user', content: c }, { role: 'assistant', content: 'ok' }])
  t.same(history, convo.slice(convo.length - history.length))
  const dropped = convo[convo.length - history.length - 1] as { role: 'user' | 'assistant', content: string }
  t.ok(tokens + s.deps.tokenizer.countMessage(dropped) > 150, 'the next older turn would not have fit')

  const big = await buildTestApp(t, { CHAT_CONTEXT_TOKENS: '8000' }, { knobs: { reply: 'ok' } })
  await big.seedBalance(1, 10_000)
  const bs = await big.createSession(1)
  for (let i = 0; i < 4; i++) await big.send(1, bs.id, `m${i}`)
  t.equal(big.llm.requests.at(-1)!.body.messages.length, 1 + 7, 'everything fits in a large budget')
})
