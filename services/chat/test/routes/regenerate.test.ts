// POST …/messages/:message_id/regenerate: a new reply to the last user message (JSON and SSE), the old one
// superseded and left out of later prompts, charged once as an exchange, refused for anything but the last reply.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, parseSse, type TestApp } from '../helper.ts'
import { claimRegeneration, failExchange, readCharges, recordReply } from '../../src/db/repositories/exchanges.ts'
import { sweepStaleExchanges } from '../../src/pending-exchanges.ts'

const SSE = { accept: 'text/event-stream' }
const regenerate = (s: TestApp, userId: number, sessionId: number, messageId: number, headers: Record<string, string> = {}) =>
  s.app.inject({ method: 'POST', url: `/api/sessions/${sessionId}/messages/${messageId}/regenerate`, headers: { ...s.auth(userId), ...headers } })
const list = async (s: TestApp, userId: number, sessionId: number) =>
  (await s.app.inject({ method: 'GET', url: `/api/sessions/${sessionId}/messages`, headers: s.auth(userId) })).json()

/** DESIGN §3 with default ratios: Σ tokens over the user's messages, and Σ (prompt + completion) of the exchange charges. */
async function tokensAndCharges (s: TestApp, userId: number): Promise<[number, number]> {
  const { rows } = await sql<{ tokens: string, charged: string }>`
    select (select coalesce(sum(tokens), 0) from messages where user_id = ${userId}) as tokens,
      (select coalesce(sum(prompt_tokens + completion_tokens), 0) from usage where user_id = ${userId} and purpose = 'exchange') as charged`.execute(s.deps.db)
  return [Number(rows[0].tokens), Number(rows[0].charged)]
}
const INVARIANT = 'Σ tokens over the messages = Σ exchange charges (DESIGN §3)'

t.test('regenerate as JSON: a new reply, the old one superseded and out of every later prompt, charged as an exchange', async (t) => {
  const s = await buildTestApp(t, { CHAT_SYSTEM_PROMPT: 'sys' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const first = (await s.send(1, session.id, 'first question')).json()
  const r2 = (await s.send(1, session.id, 'second question')).json()
  t.equal(r2.superseded, false, 'a reply says it is not superseded')

  s.llm.knobs.reply = 'a better answer'
  const res = await regenerate(s, 1, session.id, r2.id)
  t.equal(res.statusCode, 200)
  const r2b = res.json()
  t.match(r2b, { role: 'assistant', session_id: session.id, content: 'a better answer', superseded: false })
  t.ok(r2b.id > r2.id, 'the new reply comes after the old one')

  const asked = s.llm.requests[2].body.messages
  t.same(asked.map((m) => [m.role, m.content]), [['system', 'sys'], ['user', 'first question'], ['assistant', first.content], ['user', 'second question']],
    'the same user message asked again, with the turns before it and without the old reply')

  const listed = await list(s, 1, session.id)
  t.same(listed.map((m: { role: string, superseded: boolean }) => [m.role, m.superseded]),
    [['user', false], ['assistant', false], ['user', false], ['assistant', true], ['assistant', false]], 'the old reply stays listed, superseded')
  t.same(listed[3], { ...r2, superseded: true })
  t.same(listed[4], r2b)

  s.llm.knobs.reply = undefined
  t.equal((await s.send(1, session.id, 'third question')).statusCode, 200)
  const next = s.llm.requests[3].body.messages
  t.same(next.map((m) => m.content), ['sys', 'first question', first.content, 'second question', 'a better answer', 'third question'], 'the next prompt has the new reply, not the old one')

  await waitFor(async () => (await s.usageEvents()).length === 4, { what: 'four usage events' })
  const events = await s.usageEvents()
  const regenerated = events.find((e) => e.message_id === r2b.id)
  t.ok(regenerated, 'the usage event of the regenerate names the new reply')
  t.equal(regenerated!.purpose, undefined, 'an exchange (purpose left out, the default)')
  t.equal(regenerated!.completion_tokens, r2b.tokens, 'the new reply carries its completion tokens')
  const userMessage = listed[2]
  const sendOf = events.find((e) => e.message_id === r2.id)!
  t.equal(userMessage.tokens, sendOf.prompt_tokens + regenerated!.prompt_tokens, 'the user message carries the prompt tokens of both exchanges that asked it')
  const [tokens, charged] = await tokensAndCharges(s, 1)
  t.ok(tokens > 0)
  t.equal(tokens, charged, INVARIANT)
})

t.test('regenerate streaming: deltas then done with the stored reply; a regenerated reply can be regenerated again', async (t) => {
  const s = await buildTestApp(t, {}, { knobs: { words: 20, chunkSize: 5 } })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const r1 = (await s.send(1, session.id, 'hello')).json()
  const res = await regenerate(s, 1, session.id, r1.id, SSE)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  const events = parseSse(res.body)
  const done = events.at(-1)!
  t.equal(done.event, 'done')
  t.ok(events.length > 3 && events.slice(0, -1).every((e) => e.event === 'delta'))
  t.equal(events.slice(0, -1).map((e) => e.data.content).join(''), done.data.content, 'the deltas spell the new reply')
  t.equal(s.llm.requests[1].body.stream, true)
  const listed = await list(s, 1, session.id)
  t.same(listed.at(-1), done.data, 'done carries the listed message')

  const again = await regenerate(s, 1, session.id, done.data.id)
  t.equal(again.statusCode, 200, 'the new reply is the last one now')
  t.same((await list(s, 1, session.id)).map((m: { superseded: boolean }) => m.superseded), [false, true, true, false])
  t.equal((await regenerate(s, 1, session.id, r1.id)).statusCode, 409, 'a superseded reply cannot be regenerated')
  const [tokens, charged] = await tokensAndCharges(s, 1)
  t.ok(tokens > 0)
  t.equal(tokens, charged, INVARIANT)
})

t.test('409 for anything but the last reply, 404 for another user\'s session; the model is not called', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 10_000)
  await s.seedBalance(2, 10_000)
  const session = await s.createSession(1, 'regen')
  const r1 = (await s.send(1, session.id, 'one')).json()
  const r2 = (await s.send(1, session.id, 'two')).json()
  const [u1, , u2] = await list(s, 1, session.id)
  const calls = s.llm.requests.length
  for (const [what, id] of [['an earlier reply', r1.id], ['a user message', u2.id], ['the first user message', u1.id], ['an id of no message', r2.id + 1000]] as const) {
    const res = await regenerate(s, 1, session.id, id)
    t.equal(res.statusCode, 409, what)
    t.match(res.json(), { code: 'not_last_reply', status: 409 }, what)
  }
  const other = await s.createSession(1, 'other')
  t.equal((await regenerate(s, 1, other.id, r2.id)).statusCode, 409, 'a reply of another session')
  t.equal((await regenerate(s, 2, session.id, r2.id)).statusCode, 404, 'another user\'s session')
  t.equal((await regenerate(s, 2, session.id, r2.id, SSE)).statusCode, 404, 'another user\'s session, streaming')
  t.equal((await regenerate(s, 1, 999_999, r2.id)).statusCode, 404, 'a missing session')
  t.equal((await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages/abc/regenerate`, headers: s.auth(1) })).statusCode, 400)
  t.equal((await s.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages/${r2.id}/regenerate` })).statusCode, 401)
  t.equal(s.llm.requests.length, calls, 'the model was never called')

  // A failed send after the reply does not stop it from being the last one.
  s.llm.reset({ errorStatus: 500 })
  t.equal((await s.send(1, session.id, 'three')).statusCode, 502)
  s.llm.reset()
  t.equal((await regenerate(s, 1, session.id, r2.id)).statusCode, 200, 'only a failed user message came after it')
})

t.test('a regenerate that fails charges nothing and leaves the old reply in place', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const r1 = (await s.send(1, session.id, 'one')).json()
  s.llm.reset({ errorStatus: 500 })
  const res = await regenerate(s, 1, session.id, r1.id)
  t.equal(res.statusCode, 502)
  s.llm.reset({ reply: 'second try' })
  const listed = await list(s, 1, session.id)
  t.same(listed.map((m: { superseded: boolean }) => m.superseded), [false, false], 'nothing superseded, no new reply')
  t.equal((await s.deps.db.selectFrom('usage').selectAll().execute()).length, 1, 'only the send was charged')
  const again = await regenerate(s, 1, session.id, r1.id)
  t.equal(again.statusCode, 200, 'the same reply can be regenerated after the failure')
  t.same(s.llm.requests.at(-1)!.body.messages.at(-1), { role: 'user', content: 'one' })
  t.equal((await s.send(1, session.id, 'two')).statusCode, 200)
  const next = s.llm.requests.at(-1)!.body.messages.map((m) => m.content)
  t.ok(next.includes('second try') && !next.includes(r1.content), 'the new reply is in the next prompt, the old one is not')
  const [tokens, charged] = await tokensAndCharges(s, 1)
  t.ok(tokens > 0)
  t.equal(tokens, charged, INVARIANT)
})

t.test('Idempotency-Key: a replay answers the first reply and charges once; racing regenerates: one wins', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const r1 = (await s.send(1, session.id, 'one')).json()
  const key = { 'idempotency-key': 'regen-1' }
  const a = await regenerate(s, 1, session.id, r1.id, key)
  t.equal(a.statusCode, 200)
  const b = await regenerate(s, 1, session.id, r1.id, key)
  t.equal(b.statusCode, 200, 'the replay is not a 409 although the reply is superseded now')
  t.same(b.json(), a.json(), 'the first answer')
  const replayed = await regenerate(s, 1, session.id, r1.id, { ...key, ...SSE })
  t.same(parseSse(replayed.body).at(-1), { event: 'done', data: a.json() }, 'replayed as SSE too')
  t.equal(s.llm.requests.length, 2, 'the model was asked once for the regenerate')
  const conflict = await regenerate(s, 1, session.id, a.json().id, key)
  t.equal(conflict.statusCode, 409)
  t.equal(conflict.json().code, 'idempotency_conflict', 'the key with another reply')
  t.equal((await s.send(1, session.id, 'one', key)).json().code, 'idempotency_conflict', 'the key with a send')
  t.equal((await s.deps.db.selectFrom('usage').selectAll().execute()).length, 2, 'charged once')
  await waitFor(async () => (await s.usageEvents()).length === 2, { what: 'two events' })
  const events = await s.usageEvents()
  t.same(events.map((e) => e.message_id), [r1.id, a.json().id])

  // Parallel regenerates of the same reply (no key; CHAT_MAX_INFLIGHT is 2): exactly one is asked and charged.
  const last = a.json().id
  s.llm.knobs.latencyMs = 150
  const raced = await Promise.all([1, 2].map(() => regenerate(s, 1, session.id, last)))
  t.same(raced.map((r) => r.statusCode).sort(), [200, 409], 'one regenerate, the other refused')
  const won = raced.find((r) => r.statusCode === 200)!.json()
  t.equal((await s.deps.db.selectFrom('usage').selectAll().execute()).length, 3, 'one more charge')
  t.same((await list(s, 1, session.id)).map((m: { id: number, superseded: boolean }) => m.superseded), [false, true, true, false])
  t.equal((await list(s, 1, session.id)).at(-1).id, won.id)
  const [tokens, charged] = await tokensAndCharges(s, 1)
  t.ok(tokens > 0)
  t.equal(tokens, charged, INVARIANT)
})

t.test('admission as a send: 402 with no balance, 429 with no free slot, before the model is asked', async (t) => {
  const s = await buildTestApp(t, { CHAT_MAX_INFLIGHT: '1' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const r1 = (await s.send(1, session.id, 'one')).json()
  await s.seedBalance(1, 0)
  const broke = await regenerate(s, 1, session.id, r1.id)
  t.equal(broke.statusCode, 402)
  t.equal(broke.json().code, 'insufficient_balance')
  t.equal(s.llm.requests.length, 1)
  await s.seedBalance(1, 10_000)
  let release!: () => void
  s.llm.knobs.hold = new Promise<void>((resolve) => { release = resolve })
  const other = await s.createSession(1, 'other')
  const busy = s.send(1, other.id, 'hold the slot')
  await waitFor(() => s.llm.requests.length === 2, { what: 'the send in flight' })
  const limited = await regenerate(s, 1, session.id, r1.id)
  t.equal(limited.statusCode, 429)
  release()
  t.equal((await busy).statusCode, 200)
  s.llm.knobs.hold = undefined
  t.equal((await regenerate(s, 1, session.id, r1.id)).statusCode, 200)
})

t.test('a regeneration whose process died: the sweeper charges its prompt and the old reply stays current', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const r1 = (await s.send(1, session.id, 'one')).json()
  const [u1] = await list(s, 1, session.id)
  // What a process does before it dies: the claim, with a lease nobody renews.
  const claimed = await claimRegeneration(s.deps.db, { userMessageId: u1.id, replyId: r1.id, model: 'gpt-4o-mini', promptTokens: 21, leaseMs: 1 })
  t.ok(claimed)
  t.equal(await claimRegeneration(s.deps.db, { userMessageId: u1.id, replyId: r1.id, model: 'gpt-4o-mini', promptTokens: 21, leaseMs: 1 }), undefined, 'a second claim loses')
  t.equal((await regenerate(s, 1, session.id, r1.id)).statusCode, 409, 'while it is pending, the reply cannot be regenerated again')
  await waitFor(async () => (await readCharges(s.deps.db, 1)).stale.length === 1, { what: 'the lease expired' })
  const opts = { staleMs: 0, prices: s.config.MODEL_PRICES, defaultModel: 'gpt-4o-mini', eventsNamespace: s.config.EVENTS_NAMESPACE, log: s.app.log }
  t.equal(await sweepStaleExchanges(s.deps.db, opts), 1)
  const usage = await s.deps.db.selectFrom('usage').selectAll().where('message_id', '=', claimed!.reply_id).executeTakeFirstOrThrow()
  t.match(usage, { prompt_tokens: 21, completion_tokens: 0, usage_source: 'estimated', purpose: 'exchange' }, 'charged its prompt')
  const row = await s.deps.db.selectFrom('messages').selectAll().where('id', '=', u1.id).executeTakeFirstOrThrow()
  t.match(row, { status: 'ok', error_code: null, exchange_reply_id: r1.id, exchange_supersedes: null, tokens: u1.tokens + 21 }, 'the user message is ok again, with its reply and the charged prompt')
  t.same((await list(s, 1, session.id)).map((m: { superseded: boolean }) => m.superseded), [false, false])
  t.equal((await regenerate(s, 1, session.id, r1.id)).statusCode, 200, 'and the reply can be regenerated')
  const [tokens, charged] = await tokensAndCharges(s, 1)
  t.equal(tokens, charged, INVARIANT)
})

t.test('a send while a regeneration is in flight: the reply being replaced (and its question, pending) stays out of the prompt', async (t) => {
  const s = await buildTestApp(t, { CHAT_SYSTEM_PROMPT: 'sys' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const r0 = (await s.send(1, session.id, 'zero')).json()
  const r1 = (await s.send(1, session.id, 'one')).json()
  let release!: () => void
  s.llm.knobs.hold = new Promise<void>((resolve) => { release = resolve })
  s.llm.knobs.reply = 'the regenerated answer'
  const regen = regenerate(s, 1, session.id, r1.id)
  await waitFor(() => s.llm.requests.length === 3, { what: 'the regeneration asked the model' })
  s.llm.reset()
  t.equal((await s.send(1, session.id, 'two')).statusCode, 200, 'the send is answered meanwhile')
  const asked = s.llm.requests.at(-1)!.body.messages.map((m) => m.content)
  t.notOk(asked.includes(r1.content), 'the reply being replaced is not in the prompt (it is superseded a moment later)')
  t.same(asked, ['sys', 'zero', r0.content, 'two'], 'a consistent history: no answer without its question')
  release()
  const done = await regen
  t.equal(done.statusCode, 200)
  t.same((await list(s, 1, session.id)).filter((m: { superseded: boolean }) => m.superseded).map((m: { content: string }) => m.content),
    [r1.content], 'the old reply ends superseded')
  const [tokens, charged] = await tokensAndCharges(s, 1)
  t.equal(tokens, charged, INVARIANT)
})

t.test('a regeneration settled by the sweeper whose process then fails it late does not undo a newer regeneration of the same reply', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1, 'regen')
  const r1 = (await s.send(1, session.id, 'one')).json()
  const [u1] = await list(s, 1, session.id)
  const claim = () => claimRegeneration(s.deps.db, { userMessageId: u1.id, replyId: r1.id, model: 'gpt-4o-mini', promptTokens: 5, leaseMs: 1 })
  const stalled = (await claim())!
  await waitFor(async () => (await readCharges(s.deps.db, 1)).stale.length === 1, { what: 'the lease expired' })
  const opts = { staleMs: 0, prices: s.config.MODEL_PRICES, defaultModel: 'gpt-4o-mini', eventsNamespace: s.config.EVENTS_NAMESPACE, log: s.app.log }
  t.equal(await sweepStaleExchanges(s.deps.db, opts), 1, 'the sweeper settled the stalled regeneration')
  const newer = (await claimRegeneration(s.deps.db, { userMessageId: u1.id, replyId: r1.id, model: 'gpt-4o-mini', promptTokens: 5, leaseMs: 60_000 }))!
  t.ok(newer, 'the user regenerated again')
  // The stalled process comes back with nothing generated and marks its exchange failed.
  await failExchange(s.deps.db, u1.id, stalled.reply_id, 'upstream_error')
  const row = await s.deps.db.selectFrom('messages').selectAll().where('id', '=', u1.id).executeTakeFirstOrThrow()
  t.match(row, { status: 'pending', exchange_reply_id: newer.reply_id, exchange_supersedes: r1.id }, 'the newer regeneration keeps its claim')
  t.equal(await claim(), undefined, 'so no third regeneration of the same reply can start meanwhile')
  t.equal((await regenerate(s, 1, session.id, r1.id)).statusCode, 409)
  // Or it comes back with a reply: its charge was the sweeper's already, and the newer claim stands too.
  const late = await recordReply(s.deps.db, {
    userMessageId: u1.id,
    promptTokens: 5,
    reply: { id: stalled.reply_id, session_id: session.id, user_id: 1, content: 'late', tokens: 2, content_tokens: 1, status: 'ok', error_code: null },
    event: { event_id: randomUUID(), occurred_at: new Date().toISOString(), user_id: 1, session_id: session.id, message_id: stalled.reply_id, model: 'gpt-4o-mini', prompt_tokens: 5, completion_tokens: 2, usage_source: 'provider', estimated_amount: 7 },
    subject: 'x'
  })
  t.equal(late.fresh, false, 'charged once, by the sweeper')
  t.match(await s.deps.db.selectFrom('messages').selectAll().where('id', '=', u1.id).executeTakeFirstOrThrow(), { status: 'pending', exchange_reply_id: newer.reply_id },
    'the late record leaves the newer regeneration alone')
})
