// /internal/usage and /internal/usage/republish: what usage:reconcile reads and re-sends.
import t from 'tap'
import { assertInternalContracts, waitFor } from '@chat-platform/platform/testing'
import { buildTestApp } from '../helper.ts'
import { insertUserMessage } from '../../src/db/repositories/exchanges.ts'

t.test('every internal route is a contract, with the contract\'s schemas', async (t) => {
  assertInternalContracts(t, (await buildTestApp(t)).app, 'chat')
})

t.test('internal usage routes', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const start = new Date(Date.now() - 1000).toISOString()
  for (const c of ['one', 'two']) t.equal((await s.send(1, session.id, c)).statusCode, 200)
  await waitFor(async () => (await s.streamMessageCount()) === 2, { what: 'two events' })
  const rows = await s.deps.db.selectFrom('usage').selectAll().orderBy('occurred_at').execute()

  const list = await s.app.inject({ method: 'GET', url: `/internal/usage?since=${encodeURIComponent(start)}` })
  t.equal(list.statusCode, 200)
  t.same(list.json(), { events: rows.map((r) => ({ event_id: r.event_id, occurred_at: r.occurred_at.toISOString() })), pending: { count: 0, oldest: null } })
  const until = rows[1].occurred_at.toISOString()
  t.same((await s.app.inject({ method: 'GET', url: `/internal/usage?since=${encodeURIComponent(start)}&until=${encodeURIComponent(until)}` })).json().events.map((e: { event_id: string }) => e.event_id), [rows[0].event_id], 'until is exclusive')
  t.same((await s.app.inject({ method: 'GET', url: `/internal/usage?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}` })).json(), { events: [], pending: { count: 0, oldest: null } })
  t.equal((await s.app.inject({ method: 'GET', url: '/internal/usage' })).statusCode, 400)
  t.equal((await s.app.inject({ method: 'GET', url: '/internal/usage?since=yesterday' })).statusCode, 400)

  // Re-publishing uses the same event id, so JetStream (and billing) drop the copy.
  const res = await s.app.inject({ method: 'POST', url: '/internal/usage/republish', payload: { event_ids: [rows[0].event_id, '00000000-0000-4000-8000-000000000000'] } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { requeued: 1 }, 'unknown ids are ignored')
  await waitFor(async () => (await s.deps.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute()).length === 0, { what: 'republished' })
  t.equal(await s.streamMessageCount(), 2, 'de-duplicated by Nats-Msg-Id')

  // An outbox row pruned after its retention is rebuilt from the usage record, same id and payload.
  const before = await s.deps.db.selectFrom('outbox').select('payload').where('id', '=', rows[1].event_id).executeTakeFirstOrThrow()
  await s.deps.db.deleteFrom('outbox').where('id', '=', rows[1].event_id).execute()
  t.same((await s.app.inject({ method: 'POST', url: '/internal/usage/republish', payload: { event_ids: [rows[1].event_id] } })).json(), { requeued: 1 })
  const rebuilt = await waitFor(() => s.deps.db.selectFrom('outbox').selectAll().where('id', '=', rows[1].event_id).where('published_at', 'is not', null).executeTakeFirst(), { what: 'rebuilt and published' })
  t.same(rebuilt!.payload, before.payload)
  t.equal(await s.streamMessageCount(), 2)
  t.equal((await s.app.inject({ method: 'POST', url: '/internal/usage/republish', payload: { event_ids: ['nope'] } })).statusCode, 400)
})

t.test('/internal/usage counts exchanges left pending with an expired lease (what usage:reconcile reports)', async (t) => {
  const s = await buildTestApp(t, { CHAT_PENDING_SWEEP_MS: '3600000' })
  const session = await s.createSession(2)
  const pending = (leaseMs: number) => insertUserMessage(s.deps.db, { session_id: session.id, user_id: 2, role: 'user', content: 'q', content_tokens: 1, status: 'pending', error_code: null, exchange_model: 'm', exchange_prompt_tokens: 3, lease_ms: leaseMs })
  const dead = await pending(-1000)
  await pending(60_000)
  const res = (await s.app.inject({ method: 'GET', url: `/internal/usage?since=${encodeURIComponent(new Date().toISOString())}` })).json()
  t.same(res.pending, { count: 1, oldest: dead.created_at.toISOString() }, 'the live exchange is not counted')
})

t.test('a rebuilt event of a simulated exchange still says it was simulated', async (t) => {
  const s = await buildTestApp(t, {}, { builtInSimulator: true })
  await s.seedBalance(3, 1000)
  const session = await s.createSession(3)
  t.equal((await s.send(3, session.id, 'simulate me')).statusCode, 200)
  const row = await s.deps.db.selectFrom('usage').selectAll().executeTakeFirstOrThrow()
  t.equal(row.simulated, true)
  const before = await waitFor(() => s.deps.db.selectFrom('outbox').select('payload').where('id', '=', row.event_id).where('published_at', 'is not', null).executeTakeFirst(), { what: 'published' })
  t.match(before!.payload, { simulated: true })
  await s.deps.db.deleteFrom('outbox').where('id', '=', row.event_id).execute()
  t.same((await s.app.inject({ method: 'POST', url: '/internal/usage/republish', payload: { event_ids: [row.event_id] } })).json(), { requeued: 1 })
  const rebuilt = await s.deps.db.selectFrom('outbox').select('payload').where('id', '=', row.event_id).executeTakeFirstOrThrow()
  t.same(rebuilt.payload, before!.payload, 'the same payload, simulated included')
})
