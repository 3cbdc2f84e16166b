// Delivered output is charged once: a record that fails after the model answered is retried until Postgres takes
// it, recording an exchange twice charges once, and exchanges left pending by a dead process are settled.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { waitFor } from '@chat-platform/platform/testing'
import { namespaced, Subjects, type UsageRecorded } from '@chat-platform/contracts'
import { buildTestApp, type TestApp } from './helper.ts'
import { insertUserMessage, readCharges, recordReply } from '../src/db/repositories/exchanges.ts'
import { RecordRetries, sweepStaleExchanges } from '../src/pending-exchanges.ts'
import { inflightKey } from '../src/inflight.ts'

const recorded = async (s: TestApp, userId: number) =>
  Number((await s.deps.db.selectFrom('user_charges').select('recorded').where('user_id', '=', userId).executeTakeFirst())?.recorded ?? 0)

// Postgres itself refuses the usage insert (a trigger), as when the database goes away mid-exchange.
async function breakUsageInserts (s: TestApp) {
  await sql`create function fail_usage() returns trigger language plpgsql as $$ begin raise exception 'usage unavailable'; end $$`.execute(s.deps.db)
  await sql`create trigger fail_usage before insert on usage for each row execute function fail_usage()`.execute(s.deps.db)
  return async () => { await sql`drop trigger fail_usage on usage`.execute(s.deps.db) }
}

t.test('a reply that cannot be recorded is retried in the background and charged once Postgres takes it; the slot is held until then', async (t) => {
  const s = await buildTestApp(t, { CHAT_MAX_INFLIGHT: '1' }, { knobs: { usage: { prompt_tokens: 11, completion_tokens: 4 } } })
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const repair = await breakUsageInserts(s)
  const res = await s.send(1, session.id, 'remember me')
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'service_unavailable')
  t.equal(await recorded(s, 1), 0)
  const pending = await s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'user').executeTakeFirstOrThrow()
  t.match(pending, { status: 'pending', exchange_model: 'gpt-4o-mini' }, 'the exchange stays pending, with what charging it needs')
  t.ok(pending.exchange_prompt_tokens! > 0)
  // The slot is still held: admission must not let the user past a charge it cannot count yet.
  t.equal((await s.send(1, session.id, 'next')).statusCode, 429)
  await repair()
  await waitFor(async () => await recorded(s, 1) === 15, { what: 'the charge lands' })
  const usage = await s.deps.db.selectFrom('usage').selectAll().execute()
  t.equal(usage.length, 1)
  t.match(usage[0], { prompt_tokens: 11, completion_tokens: 4, usage_source: 'provider', estimated_amount: 15, message_id: Number(pending.exchange_reply_id) })
  const list = (await s.app.inject({ url: `/api/sessions/${session.id}/messages`, headers: s.auth(1) })).json()
  t.same(list.map((m: { role: string }) => m.role), ['user', 'assistant'], 'the reply is stored and listed')
  await waitFor(async () => (await s.deps.redis.zcard(inflightKey(1))) === 0, { what: 'slot released after the charge' })
  await waitFor(async () => (await s.streamMessageCount()) === 1, { what: 'one usage event' })
  t.equal((await s.send(1, session.id, 'next')).statusCode, 200)
})

t.test('recording the same exchange twice (a COMMIT whose answer was lost, then retried) charges once', async (t) => {
  const s = await buildTestApp(t)
  const session = await s.createSession(3)
  const user = await insertUserMessage(s.deps.db, { session_id: session.id, user_id: 3, role: 'user', content: 'q', content_tokens: 1, status: 'pending', error_code: null, exchange_model: 'gpt-4o-mini', exchange_prompt_tokens: 9, lease_ms: 60_000 })
  const record = (eventId: string) => ({
    userMessageId: user.id,
    promptTokens: 9,
    reply: { id: user.reply_id, session_id: session.id, user_id: 3, content: 'a', tokens: 2, content_tokens: 1, status: 'ok' as const, error_code: null },
    event: { event_id: eventId, occurred_at: new Date().toISOString(), user_id: 3, session_id: session.id, message_id: user.reply_id, model: 'gpt-4o-mini', prompt_tokens: 9, completion_tokens: 2, usage_source: 'provider' as const, estimated_amount: 11 },
    subject: namespaced(s.config.EVENTS_NAMESPACE).subject(Subjects.usageRecorded)
  })
  const first = await recordReply(s.deps.db, record(randomUUID()))
  t.equal(first.fresh, true)
  t.equal(first.reply?.id, user.reply_id)
  const again = await recordReply(s.deps.db, record(randomUUID()))
  t.equal(again.fresh, false, 'the second write is a no-op')
  t.equal(again.reply?.id, user.reply_id, 'and answers the stored reply')
  t.equal(await recorded(s, 3), 11)
  t.equal((await s.deps.db.selectFrom('usage').selectAll().execute()).length, 1)
  t.equal((await s.deps.db.selectFrom('outbox').selectAll().execute()).length, 1)
})

t.test('the sweeper settles exchanges whose lease expired: prompt charged, estimated, once; live ones are left alone', async (t) => {
  const s = await buildTestApp(t, { MODEL_PRICES: '{"gpt-4o-mini":{"input":2,"output":1}}' })
  const session = await s.createSession(4)
  const pending = (leaseMs: number, promptTokens: number) => insertUserMessage(s.deps.db, { session_id: session.id, user_id: 4, role: 'user', content: 'q', content_tokens: 1, status: 'pending', error_code: null, exchange_model: 'gpt-4o-mini', exchange_prompt_tokens: promptTokens, lease_ms: leaseMs })
  const dead = await pending(-1000, 7)
  const live = await pending(60_000, 5)
  t.same((await readCharges(s.deps.db, 4)).stale, [{ model: 'gpt-4o-mini', prompt_tokens: 7 }], 'admission counts the dead one before it is settled')
  const opts = { staleMs: 0, prices: s.config.MODEL_PRICES, defaultModel: 'gpt-4o-mini', eventsNamespace: s.config.EVENTS_NAMESPACE, log: s.app.log }
  // Two replicas sweeping at once settle it once.
  const [a, b] = await Promise.all([sweepStaleExchanges(s.deps.db, opts), sweepStaleExchanges(s.deps.db, opts)])
  t.equal(a + b, 1)
  t.equal(await sweepStaleExchanges(s.deps.db, opts), 0)
  const usage = await s.deps.db.selectFrom('usage').selectAll().execute()
  t.equal(usage.length, 1)
  t.match(usage[0], { message_id: dead.reply_id, prompt_tokens: 7, completion_tokens: 0, usage_source: 'estimated', estimated_amount: 14 })
  t.equal(await recorded(s, 4), 14)
  t.same(await readCharges(s.deps.db, 4), { recorded: 14, stale: [] })
  const rows = await s.deps.db.selectFrom('messages').selectAll().orderBy('id').execute()
  t.match(rows.find((r) => r.id === dead.id), { status: 'failed', error_code: 'interrupted', tokens: 7 })
  t.match(rows.find((r) => r.id === live.id), { status: 'pending' })
  const events = await waitFor(async () => { const e = await s.usageEvents(); return e.length === 1 ? e : undefined }, { what: 'the event' }) as UsageRecorded[]
  t.match(events[0], { message_id: dead.reply_id, usage_source: 'estimated', estimated_amount: 14 })
  // The dead process's reply, recorded late, charges nothing more.
  const late = await recordReply(s.deps.db, {
    userMessageId: dead.id,
    promptTokens: 7,
    reply: { id: dead.reply_id, session_id: session.id, user_id: 4, content: 'late', tokens: 3, content_tokens: 1, status: 'ok', error_code: null },
    event: { event_id: randomUUID(), occurred_at: new Date().toISOString(), user_id: 4, session_id: session.id, message_id: dead.reply_id, model: 'gpt-4o-mini', prompt_tokens: 7, completion_tokens: 3, usage_source: 'provider', estimated_amount: 17 },
    subject: 'x'
  })
  t.same(late, { fresh: false, reply: undefined })
  t.equal(await recorded(s, 4), 14)
})

t.test('an Idempotency-Key run twice (a stale claim taken over while its first exchange still ran): the exchange recorded second charges nothing, and the sweeper does not charge it later either', async (t) => {
  const s = await buildTestApp(t)
  const session = await s.createSession(6)
  const subject = namespaced(s.config.EVENTS_NAMESPACE).subject(Subjects.usageRecorded)
  const idempotency = { key: 'k-twice', request_hash: 'h' }
  // Both exchanges of the key: their user messages are pending; the first one's process no longer renews its lease.
  const pending = (leaseMs: number) => insertUserMessage(s.deps.db, { session_id: session.id, user_id: 6, role: 'user', content: 'q', content_tokens: 1, status: 'pending', error_code: null, exchange_model: 'gpt-4o-mini', exchange_prompt_tokens: 9, lease_ms: leaseMs })
  const first = await pending(-1000)
  const second = await pending(60_000)
  const record = (m: typeof first, amount: number) => recordReply(s.deps.db, {
    userMessageId: m.id,
    promptTokens: 9,
    reply: { id: m.reply_id, session_id: session.id, user_id: 6, content: 'a', tokens: amount - 9, content_tokens: 1, status: 'ok', error_code: null },
    event: { event_id: randomUUID(), occurred_at: new Date().toISOString(), user_id: 6, session_id: session.id, message_id: m.reply_id, model: 'gpt-4o-mini', prompt_tokens: 9, completion_tokens: amount - 9, usage_source: 'provider', estimated_amount: amount },
    subject,
    idempotency
  })
  t.equal((await record(second, 12)).fresh, true, 'the takeover recorded first')
  t.equal((await record(first, 13)).fresh, false, 'the key is charged already: the other exchange charges nothing')
  const row = await s.deps.db.selectFrom('messages').selectAll().where('id', '=', first.id).executeTakeFirstOrThrow()
  t.not(row.status, 'pending', 'its user message is settled, not left pending')
  const opts = { staleMs: 0, prices: s.config.MODEL_PRICES, defaultModel: 'gpt-4o-mini', eventsNamespace: s.config.EVENTS_NAMESPACE, log: s.app.log }
  t.equal(await sweepStaleExchanges(s.deps.db, opts), 0, 'the sweeper finds nothing to charge')
  t.equal((await s.deps.db.selectFrom('usage').selectAll().execute()).length, 1, 'one charge for the key')
  t.equal(await recorded(s, 6), 12)
  t.same((await readCharges(s.deps.db, 6)).stale, [], 'admission counts no stale exchange')
  const { rows: [sum] } = await sql<{ tokens: string }>`select sum(tokens) as tokens from messages where user_id = 6`.execute(s.deps.db)
  t.equal(Number(sum.tokens), 12, 'Σ message tokens = Σ exchange charges')
})

t.test('each replica runs the sweeper on CHAT_PENDING_SWEEP_MS', async (t) => {
  const s = await buildTestApp(t, { CHAT_PENDING_SWEEP_MS: '100', CHAT_PENDING_STALE_MS: '0' })
  const session = await s.createSession(5)
  await insertUserMessage(s.deps.db, { session_id: session.id, user_id: 5, role: 'user', content: 'q', content_tokens: 1, status: 'pending', error_code: null, exchange_model: 'gpt-4o-mini', exchange_prompt_tokens: 3, lease_ms: -1 })
  await waitFor(async () => await recorded(s, 5) === 3, { what: 'settled by the app\'s sweeper' })
})

t.test('RecordRetries: lands once the write succeeds, gives up after retryMs, stops at close()', async (t) => {
  const log = { warn: () => {}, error: () => {} } as unknown as Parameters<RecordRetries['retry']>[2]
  const retries = new RecordRetries({ retryMs: 60_000 })
  let calls = 0
  t.equal(await retries.retry('flaky', async () => { if (++calls < 3) throw new Error('down') }, log), true)
  t.equal(calls, 3)
  t.equal(await new RecordRetries({ retryMs: 50 }).retry('never', async () => { throw new Error('down') }, log), false, 'gave up')
  const stopping = retries.retry('at shutdown', async () => { throw new Error('down') }, log)
  t.equal(retries.size, 1)
  await retries.close()
  t.equal(await stopping, false, 'stopped by close()')
  t.equal(retries.size, 0)
})
