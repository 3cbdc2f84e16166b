// Idempotency-Key on send: a retry returns the first reply with one exchange and one charge.
import t from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, parseSse } from '../helper.ts'
import { deleteExpiredIdempotencyKeys } from '../../src/db/repositories/idempotency-keys.ts'

t.test('idempotent sends', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 1000)
  const session = await s.createSession(1)
  const usageRows = async () => (await s.deps.db.selectFrom('usage').selectAll().execute()).length

  t.test('same key and body: the first reply, one model call, one charge', async (t) => {
    const key = { 'idempotency-key': 'retry-1' }
    const first = await s.send(1, session.id, 'hello once', key)
    t.equal(first.statusCode, 200)
    const again = await s.send(1, session.id, 'hello once', key)
    t.equal(again.statusCode, 200)
    t.same(again.json(), first.json())
    const sse = parseSse((await s.send(1, session.id, 'hello once', { ...key, accept: 'text/event-stream' })).body)
    t.same(sse.map((e) => e.event), ['delta', 'done'])
    t.same(sse[1].data, first.json())
    t.equal(s.llm.requests.length, 1)
    t.equal(await usageRows(), 1)
    const listed = (await s.app.inject({ method: 'GET', url: `/api/sessions/${session.id}/messages`, headers: s.auth(1) })).json()
    t.equal(listed.length, 2, 'one exchange stored')
    await waitFor(async () => (await s.usageEvents()).length === 1, { what: 'one usage event' })
  })

  t.test('same key, different body: 409', async (t) => {
    const res = await s.send(1, session.id, 'something else', { 'idempotency-key': 'retry-1' })
    t.equal(res.statusCode, 409)
    t.equal(res.json().code, 'idempotency_conflict')
    const other = await s.createSession(1)
    t.equal((await s.send(1, other.id, 'hello once', { 'idempotency-key': 'retry-1' })).statusCode, 409, 'another session is another request')
    t.equal(s.llm.requests.length, 1)
  })

  t.test('keys are per user', async (t) => {
    await s.seedBalance(2, 1000)
    const theirs = await s.createSession(2)
    t.equal((await s.send(2, theirs.id, 'hello once', { 'idempotency-key': 'retry-1' })).statusCode, 200)
    t.equal(s.llm.requests.length, 2)
  })

  t.test('a concurrent retry while the first is in flight is refused with 409 and never calls the model', async (t) => {
    let open!: () => void
    s.llm.knobs.hold = new Promise<void>((resolve) => { open = resolve })
    const calls = s.llm.requests.length
    const first = s.send(1, session.id, 'slow one', { 'idempotency-key': 'retry-2' })
    await waitFor(() => s.llm.requests.length === calls + 1, { what: 'first in flight' })
    const second = await s.send(1, session.id, 'slow one', { 'idempotency-key': 'retry-2' })
    t.equal(second.statusCode, 409)
    t.equal(second.json().code, 'idempotency_conflict')
    t.equal(second.headers['retry-after'], '1')
    open()
    const done = await first
    t.equal(done.statusCode, 200)
    delete s.llm.knobs.hold
    t.same((await s.send(1, session.id, 'slow one', { 'idempotency-key': 'retry-2' })).json(), done.json())
    t.equal(s.llm.requests.length, calls + 1)
  })

  t.test('a failed exchange charged nothing, so the key is free for a real retry', async (t) => {
    s.llm.knobs.errorStatus = 500
    const calls = s.llm.requests.length
    t.equal((await s.send(1, session.id, 'flaky', { 'idempotency-key': 'retry-3' })).statusCode, 502)
    s.llm.reset()
    const ok = await s.send(1, session.id, 'flaky', { 'idempotency-key': 'retry-3' })
    t.equal(ok.statusCode, 200)
    t.equal(s.llm.requests.length, calls + 2)
    await s.seedBalance(1, 0)
    t.same((await s.send(1, session.id, 'flaky', { 'idempotency-key': 'retry-3' })).json(), ok.json(), 'a replay needs no balance')
    t.equal((await s.send(1, session.id, 'new', { 'idempotency-key': 'retry-4' })).statusCode, 402)
    await s.seedBalance(1, 1000)
    t.equal((await s.send(1, session.id, 'new', { 'idempotency-key': 'retry-4' })).statusCode, 200, 'a 402 does not burn the key')
  })

  t.test('keys are kept at least 24 hours; an expired or swept key still names its charged exchange', async (t) => {
    const age = (key: string, hours: number) => s.deps.db.updateTable('idempotency_keys').set({ created_at: new Date(Date.now() - hours * 3600_000) }).where('key', '=', key).execute()
    const first = (await s.app.inject({ method: 'GET', url: `/api/sessions/${session.id}/messages`, headers: s.auth(1) })).json()[1]
    const calls = s.llm.requests.length
    const rows = await usageRows()
    await age('retry-1', 23)
    t.equal((await s.send(1, session.id, 'changed body', { 'idempotency-key': 'retry-1' })).statusCode, 409, 'still held at 23 h')
    await age('retry-1', 25)
    const conflict = await s.send(1, session.id, 'changed body', { 'idempotency-key': 'retry-1' })
    t.equal(conflict.statusCode, 409, 'expired: another request is still a conflict')
    t.equal(conflict.json().code, 'idempotency_conflict')
    await age('retry-1', 25)
    const replay = await s.send(1, session.id, 'hello once', { 'idempotency-key': 'retry-1' })
    t.equal(replay.statusCode, 200, 'expired: the same request replays')
    t.same(replay.json(), first, 'the stored reply')
    t.ok(await deleteExpiredIdempotencyKeys(s.deps.db, 0), 'every key record swept')
    const sse = parseSse((await s.send(1, session.id, 'hello once', { 'idempotency-key': 'retry-1', accept: 'text/event-stream' })).body)
    t.same(sse.map((e) => e.event), ['delta', 'done'], 'swept: a streamed retry replays too')
    t.same(sse[1].data, first)
    t.equal((await s.send(1, session.id, 'changed body', { 'idempotency-key': 'retry-1' })).statusCode, 409, 'after the replay restored the record')
    await deleteExpiredIdempotencyKeys(s.deps.db, 0)
    t.equal((await s.send(1, session.id, 'changed body', { 'idempotency-key': 'retry-1' })).statusCode, 409, 'swept: another request is a conflict')
    t.equal(s.llm.requests.length, calls, 'no model call')
    t.equal(await usageRows(), rows, 'no second charge')
    const keyed = await s.deps.db.selectFrom('usage').select(['idempotency_key']).where('user_id', '=', 1).where('idempotency_key', '=', 'retry-1').execute()
    t.equal(keyed.length, 1, 'one usage row holds the key')
  })

  t.test('an expired key whose exchange charged nothing runs again, charged once', async (t) => {
    s.llm.knobs.errorStatus = 500
    t.equal((await s.send(1, session.id, 'fails first', { 'idempotency-key': 'retry-5' })).statusCode, 502)
    s.llm.reset()
    await deleteExpiredIdempotencyKeys(s.deps.db, 0)
    const rows = await usageRows()
    const ok = await s.send(1, session.id, 'fails first', { 'idempotency-key': 'retry-5' })
    t.equal(ok.statusCode, 200)
    await deleteExpiredIdempotencyKeys(s.deps.db, 0)
    t.same((await s.send(1, session.id, 'fails first', { 'idempotency-key': 'retry-5' })).json(), ok.json(), 'then replays')
    t.equal(await usageRows(), rows + 1)
    await waitFor(async () => (await s.usageEvents()).length === rows + 1, { what: 'the usage events' })
    const events = await s.usageEvents()
    t.equal(events.filter((e) => e.message_id === ok.json().id).length, 1, 'one usage event for the exchange')
  })
})
