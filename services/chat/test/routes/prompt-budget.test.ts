// Issue #15 / DESIGN §6.4: the prompt stays within the model's window. A send or regenerate whose system prompt and
// message alone exceed the model's prompt budget (context_tokens − CHAT_MAX_OUTPUT_TOKENS) is a 400 before admission:
// no slot kept, no key kept, nothing stored or charged, the provider never asked. What fits still works.
import t from 'tap'
import { sql } from 'kysely'
import { buildTestApp, type TestApp } from '../helper.ts'

const model = (id: string, contextTokens: number, isDefault = false) => ({ id, name: id.toUpperCase(), input_ratio: 1, output_ratio: 1, context_tokens: contextTokens, default: isDefault })
// tiny: a prompt budget of 300 − 200 = 100 tokens; big: plenty.
const ENV = { CHAT_MODELS: JSON.stringify([model('big', 100_000, true), model('tiny', 300)]), CHAT_MAX_OUTPUT_TOKENS: '200', CHAT_SYSTEM_PROMPT: 'Be brief.', CHAT_MAX_INFLIGHT: '1' }
const LONG = 'alpha beta gamma delta '.repeat(40) // ≈ 160 tokens: over tiny's budget on its own

const send = (s: TestApp, userId: number, sessionId: number, payload: Record<string, unknown>, headers: Record<string, string> = {}) =>
  s.app.inject({ method: 'POST', url: `/api/sessions/${sessionId}/messages`, headers: { ...s.auth(userId), ...headers }, payload })
const list = async (s: TestApp, userId: number, sessionId: number) =>
  (await s.app.inject({ method: 'GET', url: `/api/sessions/${sessionId}/messages`, headers: s.auth(userId) })).json()
const usageRows = async (s: TestApp, userId: number) =>
  Number((await sql<{ n: string }>`select count(*) as n from usage where user_id = ${userId}`.execute(s.deps.db)).rows[0].n)
async function createSession (s: TestApp, userId: number, payload: Record<string, unknown>): Promise<{ id: number }> {
  const res = await s.app.inject({ method: 'POST', url: '/api/sessions', headers: s.auth(userId), payload })
  if (res.statusCode !== 200) throw new Error(`create session: ${res.statusCode} ${res.body}`)
  return res.json()
}

t.test('a message too long for the model: 400 before admission, nothing stored, charged or sent; what fits works', async (t) => {
  const s = await buildTestApp(t, ENV, { knobs: { reply: 'ok' } })
  await s.seedBalance(1, 100_000)
  const session = await s.createSession(1)
  t.ok(s.deps.tokenizer.count(LONG) > 100, 'the message alone is over tiny\'s budget')

  for (const [what, headers] of [['JSON', {}], ['SSE', { accept: 'text/event-stream' }], ['with an Idempotency-Key', { 'idempotency-key': 'k-long' }]] as const) {
    const res = await send(s, 1, session.id, { content: LONG, model: 'tiny' }, headers)
    t.equal(res.statusCode, 400, what)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    const body = res.json()
    t.equal(body.code, 'validation_failed')
    t.match(body.detail, /too long for the model tiny/, 'names the model')
    t.match(body.detail, /takes \d+ tokens/, 'says how many tokens it has')
    t.match(body.detail, /budget is 100 tokens/, 'and the budget')
  }
  t.equal(s.llm.requests.length, 0, 'the provider was never called')
  t.same(await list(s, 1, session.id), [], 'nothing stored')
  t.equal(await usageRows(s, 1), 0, 'nothing charged')
  t.equal(await s.streamMessageCount(), 0, 'no usage event')

  // The refused key was given back (a fitting request may use it) and no in-flight slot was kept (CHAT_MAX_INFLIGHT 1).
  const fits = await send(s, 1, session.id, { content: 'a short question', model: 'tiny' }, { 'idempotency-key': 'k-long' })
  t.equal(fits.statusCode, 200, 'a message that fits the small model works')
  t.equal(s.llm.requests.length, 1)
  t.equal(s.llm.requests[0].body.model, 'tiny')
  t.ok(s.deps.tokenizer.countPrompt(s.llm.requests[0].body.messages) <= 100, 'its prompt is within the budget')
  // The same long message fits the big model.
  t.equal((await send(s, 1, session.id, { content: LONG })).statusCode, 200, 'the long message fits the default model')
  t.equal(s.llm.requests.length, 2)
  t.equal(await usageRows(s, 1), 2, 'each exchange that ran is charged once')
  // History is still trimmed as before: tiny's next prompt cannot carry the long turn, and leaves it out.
  t.equal((await send(s, 1, session.id, { content: 'and now?', model: 'tiny' })).statusCode, 200)
  const prompt = s.llm.requests[2].body.messages
  t.notOk(prompt.some((m) => m.content === LONG), 'the long turn is trimmed from the small model\'s history')
  t.ok(s.deps.tokenizer.countPrompt(prompt) <= 100)
})

t.test('the session\'s system prompt counts: a short message under a long system prompt is refused, on send and regenerate', async (t) => {
  const s = await buildTestApp(t, ENV, { knobs: { reply: 'ok' } })
  await s.seedBalance(2, 100_000)
  const session = await createSession(s, 2, { model: 'tiny' })
  const first = await send(s, 2, session.id, { content: 'hello there' })
  t.equal(first.statusCode, 200, 'fits under the default system prompt')
  const reply = first.json()
  t.equal(s.llm.requests.length, 1)

  const patched = await s.app.inject({ method: 'PATCH', url: `/api/sessions/${session.id}`, headers: s.auth(2), payload: { system_prompt: LONG } })
  t.equal(patched.statusCode, 200)
  const res = await send(s, 2, session.id, { content: 'hi' })
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'validation_failed', detail: /too long for the model tiny/ })

  const regen = await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages/${reply.id}/regenerate`, headers: s.auth(2) })
  t.equal(regen.statusCode, 400, 'regenerate: refused the same way')
  t.match(regen.json(), { code: 'validation_failed', detail: /budget is 100 tokens/ })
  t.equal(s.llm.requests.length, 1, 'the provider was not asked again')
  const after = await list(s, 2, session.id)
  t.equal(after.length, 2, 'the first exchange only')
  t.equal(after[1].id, reply.id)
  t.equal(after[1].superseded, false, 'the reply was not replaced')
  t.equal(await usageRows(s, 2), 1, 'only the first exchange was charged')

  // Back to a short system prompt: regenerate works again (no slot or claim was left behind).
  await s.app.inject({ method: 'PATCH', url: `/api/sessions/${session.id}`, headers: s.auth(2), payload: { system_prompt: null } })
  const again = await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages/${reply.id}/regenerate`, headers: s.auth(2) })
  t.equal(again.statusCode, 200)
  t.equal(s.llm.requests.length, 2)
})
