// The usage event on JetStream: equal to what the reply recorded, exactly one per exchange, also when NATS
// is down at send time.
import t from 'tap'
import { startPrivateNats, waitFor } from '@chat-platform/platform/testing'
import { Value } from 'typebox/value'
import { UsageRecordedSchema } from '@chat-platform/contracts'
import { buildTestApp } from '../helper.ts'

t.test('the event carries exactly what the exchange recorded', async (t) => {
  const s = await buildTestApp(t, { CHAT_MODEL: 'gpt-4o-mini' }, { knobs: { usage: { prompt_tokens: 321, completion_tokens: 54 } } })
  await s.seedBalance(9, 1000)
  const session = await s.createSession(9)
  const reply = (await s.send(9, session.id, 'bill me', { 'x-request-id': 'req-usage-1' })).json()
  const events = await waitFor(async () => { const e = await s.usageEvents(); return e.length === 1 ? e : undefined }, { what: 'usage event' })
  const event = events![0]
  t.ok(Value.Check(UsageRecordedSchema, event), 'matches the contract schema')
  t.match(event, { user_id: 9, session_id: session.id, message_id: reply.id, model: 'gpt-4o-mini', prompt_tokens: 321, completion_tokens: 54, usage_source: 'provider' })
  t.equal(event.completion_tokens, reply.tokens)
  const user = await s.deps.db.selectFrom('messages').selectAll().where('role', '=', 'user').executeTakeFirstOrThrow()
  t.equal(event.prompt_tokens, user.tokens)
  const row = await s.deps.db.selectFrom('usage').selectAll().executeTakeFirstOrThrow()
  t.equal(row.event_id, event.event_id)
  t.equal(row.occurred_at.toISOString(), event.occurred_at)
  const outbox = await s.deps.db.selectFrom('outbox').selectAll().executeTakeFirstOrThrow()
  t.equal(outbox.subject, `${s.config.EVENTS_NAMESPACE}.chat.usage.recorded`)
  t.equal(outbox.request_id, 'req-usage-1', 'the request id travels with the event')
})

t.test('the exchange wakes its own relay: the event leaves at once, with no NOTIFY and no poll to find it', async (t) => {
  // A poll far beyond waitFor's 10 s: only the in-process kick after the reply's commit can publish the event in time.
  const s = await buildTestApp(t, { OUTBOX_POLL_MS: '600000' })
  await s.seedBalance(3, 1000)
  const session = await s.createSession(3)
  // The relay's start-up pass has run (an empty outbox) before the send.
  await waitFor(async () => !(s.deps.relay as unknown as { running?: Promise<void> }).running, { what: 'start-up pass' })
  for (const content of ['first', 'second']) {
    t.equal((await s.send(3, session.id, content)).statusCode, 200)
  }
  // The relay publishes, then marks the rows in a later statement: wait for both, not just the stream.
  const unpublished = async () => (await s.deps.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute()).length
  await waitFor(async () => (await s.streamMessageCount()) === 2 && (await unpublished()) === 0, { what: 'both events published and marked without a poll' })
  t.equal(await s.streamMessageCount(), 2, 'each exchange published once')
  t.equal(await unpublished(), 0)
})

t.test('exactly one event per exchange, also when NATS is down at send time', async (t) => {
  const nats = await startPrivateNats(t)
  const s = await buildTestApp(t, { NATS_URL: nats.url })
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  t.equal((await s.send(1, session.id, 'while NATS is up')).statusCode, 200)
  await waitFor(async () => (await s.streamMessageCount()) === 1, { what: 'first event' })

  await nats.stop()
  const replies = []
  for (const content of ['NATS is down', 'still down']) {
    const res = await s.send(1, session.id, content)
    t.equal(res.statusCode, 200, 'chat keeps working without NATS')
    replies.push(res.json())
  }
  const pending = await s.deps.db.selectFrom('outbox').selectAll().where('published_at', 'is', null).execute()
  t.equal(pending.length, 2, 'held in the outbox')

  await nats.start()
  await waitFor(async () => (await s.deps.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute()).length === 0, { what: 'outbox drained', timeoutMs: 30_000 })
  const events = await s.usageEvents()
  t.equal(events.length, 3, 'one event per exchange, none twice')
  t.equal(new Set(events.map((e) => e.event_id)).size, 3)
  t.same(events.slice(1).map((e) => e.message_id).sort(), replies.map((r) => r.id).sort())
  const usage = await s.deps.db.selectFrom('usage').select('event_id').execute()
  t.same(usage.map((u) => u.event_id).sort(), events.map((e) => e.event_id).sort())
})
