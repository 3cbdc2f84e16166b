// Automatic titles: set after a session's first exchange in the background (the reply never waits for it), charged
// once as usage with purpose "title", never over a title the user set meanwhile, skipped without balance.
import t from 'tap'
import { sql } from 'kysely'
import { waitFor } from '@chat-platform/platform/testing'
import type { PromptMessage } from '@chat-platform/tokenizer'
import { buildTestApp, type TestApp } from './helper.ts'
import { cleanTitle, titlePrompt, TITLE_MAX_TOKENS } from '../src/titles.ts'
import { usageDescription } from '../../billing/src/pricing.ts'

const isTitleCall = (messages: PromptMessage[]) => messages[0]?.role === 'system' && messages[0].content.startsWith('Write a short title')
const titleOf = async (s: TestApp, userId: number, sessionId: number) =>
  (await s.app.inject({ method: 'GET', url: '/api/sessions', headers: s.auth(userId) })).json().find((x: { id: number }) => x.id === sessionId)?.title
const usageRows = async (s: TestApp) => await s.deps.db.selectFrom('usage').selectAll().orderBy('occurred_at').execute()

/** A fake whose title answer waits for `release` (set while the exchange is answered, so only the title call holds). */
function gatedTitles (s: TestApp, title: string) {
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  s.llm.knobs.reply = (messages) => {
    if (isTitleCall(messages)) return title
    s.llm.knobs.hold = gate
    return 'the answer'
  }
  return () => {
    release()
    s.llm.knobs.hold = undefined
  }
}

t.test('cleanTitle and the prompt', async (t) => {
  t.equal(cleanTitle('  "Weekend plans in Paris."  '), 'Weekend plans in Paris')
  t.equal(cleanTitle('Title: 「周末去巴黎」\nmore text'), '周末去巴黎')
  t.equal(cleanTitle('标题：学习 TypeScript 的计划。'), '学习 TypeScript 的计划')
  t.equal(Array.from(cleanTitle('一'.repeat(50))!).length, 30, 'at most 30 characters')
  t.equal(cleanTitle('a'.repeat(40))!.length, 30)
  t.equal(cleanTitle(' "" \n'), undefined, 'nothing left')
  const prompt = titlePrompt('x'.repeat(5000), 'y'.repeat(5000))
  t.ok(prompt[1].content.length < 1400, 'long messages are cut to an excerpt')
})

t.test('set after the first exchange, in the background, charged once with purpose title', async (t) => {
  const s = await buildTestApp(t, { CHAT_AUTO_TITLE: 'true', CHAT_MAX_INFLIGHT: '1' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  t.equal(await titleOf(s, 1, session.id), '新会话')
  const open = gatedTitles(s, '"Weekend plans in Paris."')

  const res = await s.send(1, session.id, 'What should I do in Paris this weekend?')
  t.equal(res.statusCode, 200, 'the reply came back while the title call is still held')
  await waitFor(() => s.llm.requests.length === 2, { what: 'the title call' })
  const call = s.llm.requests[1]
  t.notOk(call.finished, 'the title call had not finished when the reply was returned')
  t.equal(await titleOf(s, 1, session.id), '新会话', 'not titled yet')
  t.equal(call.body.model, 'gpt-4o-mini', 'the default model')
  t.notOk(call.body.stream)
  t.match(call.body.messages[1].content, /What should I do in Paris this weekend\?[\s\S]*the answer/, 'the title is asked from the exchange')
  const busy = await s.send(1, session.id, 'another one')
  t.equal(busy.statusCode, 429, 'the title call holds an in-flight slot (CHAT_MAX_INFLIGHT 1)')

  open()
  await waitFor(async () => (await titleOf(s, 1, session.id)) === 'Weekend plans in Paris', { what: 'the title set' })
  const rows = await usageRows(s)
  t.same(rows.map((r) => r.purpose), ['exchange', 'title'])
  const title = rows[1]
  t.equal(title.message_id, null, 'a title names no message')
  t.equal(title.session_id, session.id)
  await waitFor(async () => (await s.usageEvents()).length === 2, { what: 'two events' })
  const event = (await s.usageEvents()).find((e) => e.purpose === 'title')!
  t.match(event, { purpose: 'title', message_id: null, session_id: session.id, user_id: 1, model: 'gpt-4o-mini', usage_source: 'provider' })
  t.equal(usageDescription(event), `会话标题 · gpt-4o-mini · 输入 ${event.prompt_tokens} + 输出 ${event.completion_tokens}`, 'billing\'s description says it was a title')
  const { rows: [charges] } = await sql<{ recorded: string }>`select recorded from user_charges where user_id = 1`.execute(s.deps.db)
  t.equal(Number(charges.recorded), rows.reduce((n, r) => n + r.estimated_amount!, 0), 'admission counts the title\'s charge')
  const { rows: [sum] } = await sql<{ tokens: string }>`select sum(tokens) as tokens from messages where user_id = 1`.execute(s.deps.db)
  t.equal(Number(sum.tokens), rows[0].prompt_tokens + rows[0].completion_tokens, 'message tokens count the exchange only, not the title')

  s.llm.knobs.reply = undefined
  t.equal((await s.send(1, session.id, 'and next?')).statusCode, 200)
  const other = await s.createSession(1, 'My own title')
  t.equal((await s.send(1, other.id, 'hello')).statusCode, 200)
  await s.app.close() // waits for the background titles
  t.equal(s.llm.requests.length, 4, 'no second title for the session, none for a session with its own title')
  t.equal((await usageRows(s)).filter((r) => r.purpose === 'title').length, 1)
  t.equal(await s.deps.db.selectFrom('sessions').select('title').where('id', '=', session.id).executeTakeFirstOrThrow().then((r) => r.title), 'Weekend plans in Paris')
})

t.test('a title the user set meanwhile is kept (the title call is still charged)', async (t) => {
  const s = await buildTestApp(t, { CHAT_AUTO_TITLE: 'true' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  const open = gatedTitles(s, 'Generated title')
  t.equal((await s.send(1, session.id, 'hi')).statusCode, 200)
  await waitFor(() => s.llm.requests.length === 2, { what: 'the title call' })
  const renamed = await s.app.inject({ method: 'PATCH', url: `/api/sessions/${session.id}`, headers: s.auth(1), payload: { title: 'Mine' } })
  if (renamed.statusCode === 404) await s.deps.db.updateTable('sessions').set({ title: 'Mine' }).where('id', '=', session.id).execute()
  else t.equal(renamed.statusCode, 200)
  open()
  await waitFor(async () => (await usageRows(s)).some((r) => r.purpose === 'title'), { what: 'the title charged' })
  t.equal(await titleOf(s, 1, session.id), 'Mine', 'the user\'s title stands')
})

t.test('skipped when the balance is used up, and when CHAT_AUTO_TITLE is off', async (t) => {
  const s = await buildTestApp(t, { CHAT_AUTO_TITLE: 'true' }, { knobs: { usage: { prompt_tokens: 40, completion_tokens: 9 } } })
  await s.seedBalance(1, 30) // the exchange (49) takes it below zero
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'hi')).statusCode, 200)
  const off = await buildTestApp(t, { CHAT_AUTO_TITLE: 'false' })
  await off.seedBalance(1, 10_000)
  const untitled = await off.createSession(1)
  t.equal((await off.send(1, untitled.id, 'hi')).statusCode, 200)
  await s.app.close()
  await off.app.close()
  t.equal(s.llm.requests.length, 1, 'no title call with the balance at or below 0')
  t.same((await usageRows(s)).map((r) => r.purpose), ['exchange'])
  t.equal(await s.deps.db.selectFrom('sessions').select('title').where('id', '=', session.id).executeTakeFirstOrThrow().then((r) => r.title), '新会话')
  t.equal(off.llm.requests.length, 1, 'no title call when turned off')
})

t.test('a title call that fails charges nothing and is tried again after the next exchange', async (t) => {
  const s = await buildTestApp(t, { CHAT_AUTO_TITLE: 'true' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  s.llm.knobs.reply = (messages) => {
    if (isTitleCall(messages)) return 'Second try'
    // Read when this exchange is answered: the next request, the first title call, gets a 500.
    if (s.llm.requests.length === 1) s.llm.knobs.errorStatus = 500
    return 'answer'
  }
  t.equal((await s.send(1, session.id, 'one')).statusCode, 200)
  await waitFor(() => s.llm.requests.length === 2, { what: 'the first title call' })
  await waitFor(async () => (await s.deps.redis.exists(`chat:title:${session.id}`)) === 0, { what: 'the first title call over' })
  s.llm.knobs.errorStatus = undefined
  t.equal(await titleOf(s, 1, session.id), '新会话')
  t.same((await usageRows(s)).map((r) => r.purpose), ['exchange'], 'the failed title call charged nothing')
  t.equal((await s.send(1, session.id, 'two')).statusCode, 200)
  await waitFor(async () => (await titleOf(s, 1, session.id)) === 'Second try', { what: 'titled after the next exchange' })
  t.same((await usageRows(s)).map((r) => r.purpose), ['exchange', 'exchange', 'title'])
})

t.test('a title\'s event rebuilt by /internal/usage/republish (its outbox row pruned) is the same event, purpose included', async (t) => {
  const s = await buildTestApp(t, { CHAT_AUTO_TITLE: 'true' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  s.llm.knobs.reply = (messages) => isTitleCall(messages) ? 'A title' : 'answer'
  t.equal((await s.send(1, session.id, 'hi')).statusCode, 200)
  await waitFor(async () => (await titleOf(s, 1, session.id)) === 'A title', { what: 'titled' })
  const row = (await usageRows(s)).find((r) => r.purpose === 'title')!
  const before = await waitFor(() => s.deps.db.selectFrom('outbox').select('payload').where('id', '=', row.event_id).where('published_at', 'is not', null).executeTakeFirst(), { what: 'published' })
  t.match(before!.payload, { purpose: 'title', message_id: null })
  await s.deps.db.deleteFrom('outbox').where('id', '=', row.event_id).execute()
  t.same((await s.app.inject({ method: 'POST', url: '/internal/usage/republish', payload: { event_ids: [row.event_id] } })).json(), { requeued: 1 })
  const rebuilt = await s.deps.db.selectFrom('outbox').select('payload').where('id', '=', row.event_id).executeTakeFirstOrThrow()
  t.same(rebuilt.payload, before!.payload, 'the same payload')
})

t.test('closing the service stops a title call still waiting for the model: nothing charged, the title unchanged', async (t) => {
  const s = await buildTestApp(t, { CHAT_AUTO_TITLE: 'true' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  gatedTitles(s, 'Never')
  t.equal((await s.send(1, session.id, 'hi')).statusCode, 200)
  await waitFor(() => s.llm.requests.length === 2, { what: 'the title call' })
  await s.app.close()
  await waitFor(() => s.llm.requests[1].aborted, { what: 'the title call aborted' })
  t.same((await usageRows(s)).map((r) => r.purpose), ['exchange'])
  t.equal(await s.deps.db.selectFrom('sessions').select('title').where('id', '=', session.id).executeTakeFirstOrThrow().then((r) => r.title), '新会话')
})

t.test('a title call asks for a title\'s worth of output: a model that rambles is cut at TITLE_MAX_TOKENS, and only that is charged', async (t) => {
  const s = await buildTestApp(t, { CHAT_AUTO_TITLE: 'true' })
  await s.seedBalance(1, 100_000)
  const session = await s.createSession(1)
  s.llm.knobs.reply = (messages) => isTitleCall(messages) ? `Paris weekend\n${'Here is why this title fits the conversation so well. '.repeat(200)}` : 'the answer'
  t.equal((await s.send(1, session.id, 'What should I do in Paris?')).statusCode, 200)
  await waitFor(async () => (await usageRows(s)).some((r) => r.purpose === 'title'), { what: 'the title charged' })
  const call = s.llm.requests[1]
  t.ok(isTitleCall(call.body.messages))
  t.equal(call.body.max_tokens, TITLE_MAX_TOKENS, 'the title call asks for at most TITLE_MAX_TOKENS, not CHAT_MAX_OUTPUT_TOKENS')
  t.equal(s.llm.requests[0].body.max_tokens, s.config.CHAT_MAX_OUTPUT_TOKENS, 'the exchange keeps CHAT_MAX_OUTPUT_TOKENS')
  const title = (await usageRows(s)).find((r) => r.purpose === 'title')!
  t.ok(title.completion_tokens <= TITLE_MAX_TOKENS, `charged for at most ${TITLE_MAX_TOKENS} output tokens (got ${title.completion_tokens})`)
  t.equal(await titleOf(s, 1, session.id), 'Paris weekend', 'the title is still the first line')
})
