// Models and per-session settings (DESIGN §6.4): GET /api/models, a session's model and system prompt (POST, PATCH),
// the per-message model, what the provider receives, the charge at the model's ratios, and the model's context window.
import t from 'tap'
import { buildTestApp, type TestApp } from '../helper.ts'

const MODELS = [
  { id: 'm-main', name: 'Main', input_ratio: 2, output_ratio: 3, context_tokens: 16_000, default: true },
  { id: 'm-cheap', name: 'Cheap', input_ratio: 0.5, output_ratio: 1.25 },
  { id: 'm-tiny', name: 'Tiny window', input_ratio: 1, output_ratio: 1, context_tokens: 200 }
]
const ENV = { CHAT_MODELS: JSON.stringify(MODELS), CHAT_MAX_OUTPUT_TOKENS: '64', CHAT_CONTEXT_TOKENS: '4000' }

const patch = (s: TestApp, userId: number, sessionId: number | string, payload: unknown) =>
  s.app.inject({ method: 'PATCH', url: `/api/sessions/${sessionId}`, headers: s.auth(userId), payload: payload as object })
const create = (s: TestApp, userId: number, payload: unknown) =>
  s.app.inject({ method: 'POST', url: '/api/sessions', headers: s.auth(userId), payload: payload as object })

t.test('GET /api/models: the configured models with their ratios, windows and the default', async (t) => {
  const s = await buildTestApp(t, ENV)
  const res = await s.app.inject({ url: '/api/models', headers: s.auth(1) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), [
    { id: 'm-main', name: 'Main', input_ratio: 2, output_ratio: 3, context_tokens: 16_000, default: true },
    { id: 'm-cheap', name: 'Cheap', input_ratio: 0.5, output_ratio: 1.25, context_tokens: 4064, default: false },
    { id: 'm-tiny', name: 'Tiny window', input_ratio: 1, output_ratio: 1, context_tokens: 200, default: false }
  ], 'a model without context_tokens gets CHAT_CONTEXT_TOKENS + CHAT_MAX_OUTPUT_TOKENS')
  t.equal((await s.app.inject({ url: '/api/models' })).statusCode, 401)

  const legacy = await buildTestApp(t, { CHAT_MODEL: 'gpt-4o', MODEL_PRICES: '{"gpt-4o":{"input":2.5,"output":10}}' })
  t.same((await legacy.app.inject({ url: '/api/models', headers: legacy.auth(1) })).json(), [
    { id: 'gpt-4o', name: 'gpt-4o', input_ratio: 2.5, output_ratio: 10, context_tokens: 8000 + 4096, default: true }
  ], 'without CHAT_MODELS: CHAT_MODEL alone, priced by MODEL_PRICES')
})

t.test('POST and PATCH /api/sessions: model and system prompt, validated, others\' sessions 404', async (t) => {
  const s = await buildTestApp(t, ENV)
  const plain = await create(s, 1, {})
  t.equal(plain.statusCode, 200)
  t.same({ model: plain.json().model, system_prompt: plain.json().system_prompt, title: plain.json().title }, { model: null, system_prompt: null, title: '新会话' }, 'defaults are null')

  const made = await create(s, 1, { title: ' Poems ', model: 'm-cheap', system_prompt: 'You write haiku.' })
  t.equal(made.statusCode, 200)
  const session = made.json()
  t.same(Object.keys(session).sort(), ['created_at', 'id', 'model', 'system_prompt', 'title', 'user_id'])
  t.same([session.title, session.model, session.system_prompt], ['Poems', 'm-cheap', 'You write haiku.'])

  for (const [name, payload, path] of [
    ['unknown model', { model: 'gpt-17' }, '/body/model'],
    ['empty model', { model: '' }, undefined],
    ['system prompt too long', { system_prompt: 'x'.repeat(8001) }, undefined],
    ['title too long', { title: 'x'.repeat(101) }, '/body/title'],
    ['title blank', { title: '   ' }, '/body/title']
  ] as const) {
    const res = await create(s, 1, payload)
    t.equal(res.statusCode, 400, `create: ${name}`)
    t.equal(res.json().code, 'validation_failed', name)
    if (path) t.equal(res.json().errors[0].path, path, name)
    const changed = await patch(s, 1, session.id, payload)
    t.equal(changed.statusCode, 400, `patch: ${name}`)
  }
  t.equal((await create(s, 1, { system_prompt: 'x'.repeat(8000) })).statusCode, 200, '8,000 characters are fine')

  const listed = (await s.app.inject({ url: '/api/sessions', headers: s.auth(1) })).json()
  t.same(listed.find((x: { id: number }) => x.id === session.id), session, 'nothing changed by the refused patches, and the list carries the settings')

  const renamed = await patch(s, 1, session.id, { title: '  Haiku  ' })
  t.same([renamed.json().title, renamed.json().model, renamed.json().system_prompt], ['Haiku', 'm-cheap', 'You write haiku.'], 'a field left out is unchanged')
  const swapped = await patch(s, 1, session.id, { model: 'm-main', system_prompt: '' })
  t.same([swapped.json().model, swapped.json().system_prompt], ['m-main', ''])
  const reset = await patch(s, 1, session.id, { model: null, system_prompt: null })
  t.same([reset.json().title, reset.json().model, reset.json().system_prompt], ['Haiku', null, null], 'null goes back to the default')
  const empty = await s.app.inject({ method: 'PATCH', url: `/api/sessions/${session.id}`, headers: { ...s.auth(1), 'content-type': 'application/json' } })
  t.equal(empty.statusCode, 200, 'no body changes nothing')
  t.same(empty.json(), reset.json())
  const ignored = await patch(s, 1, session.id, { user_id: 2, id: 99, created_at: '2000-01-01T00:00:00Z' })
  t.same(ignored.json(), reset.json(), 'unknown fields are ignored (no mass assignment)')

  const others = await patch(s, 2, session.id, { title: 'mine now', model: 'm-cheap' })
  t.equal(others.statusCode, 404, 'another user\'s session')
  t.equal(others.json().code, 'not_found')
  t.equal((await patch(s, 1, 999_999, { title: 'x' })).statusCode, 404, 'a missing session')
  t.equal((await patch(s, 1, 'abc', { title: 'x' })).statusCode, 400)
  t.equal((await s.app.inject({ method: 'PATCH', url: `/api/sessions/${session.id}`, payload: { title: 'x' } })).statusCode, 401)
  const after = (await s.app.inject({ url: '/api/sessions', headers: s.auth(1) })).json().find((x: { id: number }) => x.id === session.id)
  t.equal(after.title, 'Haiku', 'the other user changed nothing')
})

t.test('the session\'s model and system prompt go to the provider; a message may name another model; charged at its ratios', async (t) => {
  const s = await buildTestApp(t, ENV, { knobs: { usage: { prompt_tokens: 101, completion_tokens: 11 } } })
  await s.seedBalance(1, 100_000)
  const session = (await create(s, 1, { model: 'm-cheap', system_prompt: 'Answer in French.' })).json()

  t.equal((await s.send(1, session.id, 'bonjour')).statusCode, 200)
  const sent = s.llm.requests[0].body
  t.equal(sent.model, 'm-cheap', 'the session\'s model')
  t.same(sent.messages, [{ role: 'system', content: 'Answer in French.' }, { role: 'user', content: 'bonjour' }], 'the session\'s system prompt')

  const override = await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages`, headers: s.auth(1), payload: { content: 'and now?', model: 'm-main' } })
  t.equal(override.statusCode, 200)
  t.equal(s.llm.requests[1].body.model, 'm-main', 'the message\'s model')
  t.equal(s.llm.requests[1].body.messages[0].content, 'Answer in French.')

  const unknown = await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages`, headers: s.auth(1), payload: { content: 'x', model: 'gpt-17' } })
  t.equal(unknown.statusCode, 400)
  t.equal(unknown.json().code, 'validation_failed')
  t.equal(unknown.json().errors[0].path, '/body/model')
  t.equal(s.llm.requests.length, 2, 'an unknown model never reaches the provider')

  const rows = await s.deps.db.selectFrom('usage').selectAll().orderBy('message_id').execute()
  t.same(rows.map((r) => [r.model, Number(r.estimated_amount)]), [
    ['m-cheap', Math.ceil(101 * 0.5 + 11 * 1.25)],
    ['m-main', 101 * 2 + 11 * 3]
  ], 'each exchange priced with its own model\'s ratios')

  // "" sends no system prompt; null (the default) sends CHAT_SYSTEM_PROMPT.
  await patch(s, 1, session.id, { system_prompt: '' })
  await s.send(1, session.id, 'no system')
  t.same(s.llm.requests[2].body.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant', 'user'])
  await patch(s, 1, session.id, { system_prompt: null, model: null })
  await s.send(1, session.id, 'default system')
  t.equal(s.llm.requests[3].body.messages[0].content, s.config.CHAT_SYSTEM_PROMPT)
  t.equal(s.llm.requests[3].body.model, 'm-main', 'null model: the default')

  // The Idempotency-Key names the model too: the same key for another model is a conflict.
  const first = await s.send(1, session.id, 'keyed', { 'idempotency-key': 'k-model' })
  t.equal(first.statusCode, 200)
  const other = await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages`, headers: { ...s.auth(1), 'idempotency-key': 'k-model' }, payload: { content: 'keyed', model: 'm-cheap' } })
  t.equal(other.statusCode, 409)
  t.equal(other.json().code, 'idempotency_conflict')
})

t.test('a model removed from config: its sessions fall back to the default model', async (t) => {
  const s = await buildTestApp(t, ENV)
  await s.seedBalance(1, 100_000)
  const session = await s.createSession(1)
  await s.deps.db.updateTable('sessions').set({ model: 'retired-model' }).where('id', '=', session.id).execute()
  t.equal((await s.send(1, session.id, 'still here?')).statusCode, 200)
  t.equal(s.llm.requests[0].body.model, 'm-main')
})

t.test('context trimming follows the model\'s window (context_tokens − CHAT_MAX_OUTPUT_TOKENS); tokens stay consistent with the charge', async (t) => {
  const s = await buildTestApp(t, { ...ENV, CHAT_SYSTEM_PROMPT: 'Be brief.' }, { knobs: { reply: 'ok' } })
  await s.seedBalance(1, 100_000)
  const session = (await create(s, 1, { model: 'm-tiny' })).json()
  const long = 'word '.repeat(40).trim()
  for (let i = 0; i < 3; i++) t.equal((await s.send(1, session.id, `${i}: ${long}`)).statusCode, 200)
  const tinyBudget = 200 - 64
  const tiny = s.llm.requests.at(-1)!.body.messages
  t.ok(s.deps.tokenizer.countPrompt(tiny) <= tinyBudget, 'the prompt fits the tiny window less the reply')
  t.ok(tiny.length < 1 + 2 * 2 + 1, 'older turns were left out for the tiny model')
  t.equal(tiny.at(-1)!.content, `2: ${long}`)

  await patch(s, 1, session.id, { model: 'm-main' })
  t.equal((await s.send(1, session.id, `3: ${long}`)).statusCode, 200)
  const big = s.llm.requests.at(-1)!.body.messages
  t.equal(big.length, 1 + 3 * 2 + 1, 'the whole history fits the large window')

  // DESIGN §3 with provider usage: the user message's tokens are its exchange's prompt tokens, the reply's its completion.
  const rows = await s.deps.db.selectFrom('usage').selectAll().orderBy('message_id').execute()
  const messages = (await s.app.inject({ url: `/api/sessions/${session.id}/messages`, headers: s.auth(1) })).json()
  t.equal(messages.reduce((sum: number, m: { tokens: number }) => sum + m.tokens, 0), rows.reduce((sum, r) => sum + r.prompt_tokens + r.completion_tokens, 0))
})
