// Idempotency-Key on send: a retry returns the first reply with one exchange and one charge.
import t from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, parseSse } from '../helper.ts'

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

  t.test('keys are kept at least 24 hours; older ones are swept and may be reused', async (t) => {
    await s.deps.db.updateTable('idempotency_keys').set({ created_at: new Date(Date.now() - 23 * 3600_000) }).where('key', '=', 'retry-1').execute()
    t.equal((await s.send(1, session.id, 'changed body', { 'idempotency-key': 'retry-1' })).statusCode, 409, 'still held at 23 h')
    await s.deps.db.updateTable('idempotency_keys').set({ created_at: new Date(Date.now() - 25 * 3600_000) }).where('key', '=', 'retry-1').execute()
    t.equal((await s.send(1, session.id, 'changed body', { 'idempotency-key': 'retry-1' })).statusCode, 200, 'expired keys start afresh')
  })
})
