// auth.user.deleted: chat's durable consumer deletes the user's sessions, messages and stored idempotent answers, once or many times, and nobody else's.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { jetstream } from '@nats-io/jetstream'
import { namespaced, Subjects } from '@chat-platform/contracts'
import { ensureStreams } from '@chat-platform/platform'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp } from '../helper.ts'

t.test('a deleted user loses sessions and messages (redelivery deletes nothing more); other users keep theirs', async (t) => {
  const s = await buildTestApp(t)
  const names = namespaced(s.config.EVENTS_NAMESPACE)
  for (const u of [41, 42]) await s.seedBalance(u, 1000)
  for (const u of [41, 42]) {
    const { id } = await s.createSession(u, `user ${u}`)
    t.equal((await s.send(u, id, 'hello', { 'idempotency-key': `k-${u}` })).statusCode, 200)
  }
  const count = async (u: number) => ({
    sessions: (await s.deps.db.selectFrom('sessions').select('id').where('user_id', '=', u).execute()).length,
    messages: (await s.deps.db.selectFrom('messages').select('id').where('user_id', '=', u).execute()).length,
    keys: (await s.deps.db.selectFrom('idempotency_keys').select('key').where('user_id', '=', u).execute()).length
  })
  t.same(await count(41), { sessions: 1, messages: 2, keys: 1 })

  // The consumer waits for auth's stream; it is created here as auth would.
  await s.deps.userDeleted.start()
  t.teardown(() => s.deps.userDeleted.stop())
  await ensureStreams(s.deps.nc, [names.streams.AUTH_EVENTS], { maxAgeDays: 1, replicas: 1 })
  const js = jetstream(s.deps.nc)
  const event = { event_id: randomUUID(), occurred_at: new Date().toISOString(), user_id: 41 }
  await js.publish(names.subject(Subjects.userDeleted), JSON.stringify(event), { msgID: event.event_id })
  await js.publish(names.subject(Subjects.userDeleted), 'not json')
  await waitFor(async () => (await count(41)).sessions === 0, { what: 'user 41 deleted', timeoutMs: 15_000 })
  t.same(await count(41), { sessions: 0, messages: 0, keys: 0 })
  t.same(await count(42), { sessions: 1, messages: 2, keys: 1 }, 'user 42 keeps everything')
  t.equal((await s.app.inject({ url: '/api/sessions', headers: s.auth(41) })).json().length, 0)

  // The same user deleted again (a re-published event): nothing breaks, nothing else goes.
  const again = { ...event, event_id: randomUUID() }
  await js.publish(names.subject(Subjects.userDeleted), JSON.stringify(again), { msgID: again.event_id })
  await waitFor(() => s.deps.userDeleted.stats.applied >= 2, { what: 'the second event applied' })
  t.same(await count(42), { sessions: 1, messages: 2, keys: 1 })
  t.ok(s.deps.userDeleted.stats.deadLettered >= 1, 'the malformed event was set aside, not retried')
})
