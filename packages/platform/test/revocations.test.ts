// Revocations: the in-memory list's rules, the feed's catch-up and readiness on a real JetStream stream, and the verifier refusing a cached token once revoked.
import t from 'tap'
import { randomUUID, sign } from 'node:crypto'
import pino from 'pino'
import { connect } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { headers as natsHeaders } from '@nats-io/nats-core'
import { namespaced, Subjects } from '@chat-platform/contracts'
import { RevocationFeed, RevocationList, createTokenVerifier, ensureStreams } from '../src/index.ts'
import { testKeys, testNamespace, waitFor, TEST_NATS_URL } from '../src/testing/index.ts'

const nowS = () => Math.floor(Date.now() / 1000)

t.test('the list: jti, sid and user not-before, each forgotten after its exp', async (t) => {
  const list = new RevocationList()
  const tok = { id: 7, jti: 'j1', sid: 's1', iat: nowS() - 10 }
  t.notOk(list.isRevoked(tok))
  list.add({ jti: 'j1', exp: nowS() + 60 })
  t.ok(list.isRevoked(tok), 'by jti')
  t.notOk(list.isRevoked({ ...tok, jti: 'j2' }))
  list.add({ sid: 's2', exp: nowS() + 60 })
  t.ok(list.isRevoked({ ...tok, jti: 'j3', sid: 's2' }), 'by sid')
  t.notOk(list.isRevoked({ ...tok, jti: 'j3' }), 'another session lives')
  list.add({ user_id: 8, not_before: nowS(), exp: nowS() + 60 })
  t.ok(list.isRevoked({ id: 8, jti: 'x', iat: nowS() - 1 }), 'issued before not_before')
  t.notOk(list.isRevoked({ id: 8, jti: 'x', iat: nowS() }), 'issued at or after not_before')
  t.notOk(list.isRevoked({ id: 9, jti: 'x', iat: 0 }), 'another user')
  list.add({ user_id: 8, not_before: nowS() - 100, exp: nowS() + 60 })
  t.ok(list.isRevoked({ id: 8, jti: 'x', iat: nowS() - 1 }), 'an older not_before never lowers a newer one')
  list.add({ jti: 'old', exp: nowS() - 1 })
  t.notOk(list.isRevoked({ ...tok, jti: 'old' }), 'a record already past its exp is not kept')
  const before = list.size
  list.prune(Date.now() + 3600_000, true)
  t.equal(list.size, 0, `everything forgotten once expired (had ${before})`)
})

function signToken (claims: Record<string, unknown>): string {
  const input = `${Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
  return `${input}.${sign(null, Buffer.from(input), testKeys.privateKey).toString('base64url')}`
}

t.test('the feed: not ready until caught up, then a revocation published live refuses a cached token within a second', async (t) => {
  const ns = testNamespace(t)
  const names = namespaced(ns)
  const nc = await connect({ servers: TEST_NATS_URL })
  t.teardown(() => nc.close())
  await ensureStreams(nc, [{ ...names.streams.AUTH_REVOCATIONS, maxAgeSeconds: 3600 }], { maxAgeDays: 1, replicas: 1 })
  const js = jetstream(nc)
  const publish = async (event: Record<string, unknown>) => {
    const full = { event_id: randomUUID(), occurred_at: new Date().toISOString(), ...event }
    const h = natsHeaders()
    h.set('Nats-Msg-Id', full.event_id)
    await js.publish(names.subject(Subjects.tokenRevoked), JSON.stringify(full), { headers: h })
  }
  // History the feed must catch up on: 300 revocations, one of them for user 41's earlier tokens; one malformed.
  for (let i = 0; i < 300; i++) await publish({ jti: `old-${i}`, exp: nowS() + 600 })
  await publish({ user_id: 41, not_before: nowS(), exp: nowS() + 600 })
  await js.publish(names.subject(Subjects.tokenRevoked), 'not json')

  const feed = new RevocationFeed({ nc, stream: names.streams.AUTH_REVOCATIONS.name, log: pino({ level: 'silent' }) })
  await t.rejects(feed.ready(), 'not ready before it started')
  feed.start()
  t.teardown(() => feed.stop())
  await waitFor(async () => { await feed.ready(); return true }, { what: 'the catch-up' })
  t.equal(feed.list.size, 301, 'every earlier revocation is known once ready (300 jtis, 1 user; the malformed one skipped)')

  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform', 100, feed.list)
  const iat = nowS() - 5
  t.throws(() => verify(signToken({ sub: '41', iat, exp: iat + 600, iss: 'chat-platform', jti: randomUUID() })), 'a token of user 41 issued before the catch-up revocation')
  const sid = randomUUID()
  const token = signToken({ sub: '42', iat, exp: iat + 600, iss: 'chat-platform', jti: randomUUID(), sid })
  t.equal(verify(token).id, 42, 'verified, and now cached')
  t.equal(verify(token).sid, sid)
  const at = Date.now()
  await publish({ sid, exp: nowS() + 600 })
  await waitFor(() => { try { verify(token); return false } catch { return true } }, { what: 'the cached token refused', intervalMs: 5 })
  const ms = Date.now() - at
  t.ok(ms < 1000, `refused ${ms} ms after the revocation was published`)
})

t.test('the feed: a missing stream is ready (nothing was ever revoked) and attaches once the stream appears', async (t) => {
  const ns = testNamespace(t)
  const names = namespaced(ns)
  const nc = await connect({ servers: TEST_NATS_URL })
  t.teardown(() => nc.close())
  const feed = new RevocationFeed({ nc, stream: names.streams.AUTH_REVOCATIONS.name, log: pino({ level: 'silent' }), retryMs: 100 })
  feed.start()
  t.teardown(() => feed.stop())
  await waitFor(async () => { await feed.ready(); return true }, { what: 'ready without a stream' })
  await ensureStreams(nc, [{ ...names.streams.AUTH_REVOCATIONS, maxAgeSeconds: 3600 }], { maxAgeDays: 1, replicas: 1 })
  await jetstream(nc).publish(names.subject(Subjects.tokenRevoked), JSON.stringify({ event_id: randomUUID(), occurred_at: new Date().toISOString(), jti: 'late', exp: nowS() + 60 }))
  await waitFor(() => feed.list.isRevoked({ id: 1, jti: 'late', iat: 0 }), { what: 'the first revocation of a stream created later' })
  t.pass('attached')
})

t.test('the feed stops promptly while its connection is still being made', async (t) => {
  const feed = new RevocationFeed({ nc: new Promise(() => {}), stream: 'X', log: pino({ level: 'silent' }) })
  feed.start()
  await feed.stop()
  t.pass('stopped')
})

t.test('ensureStreams: a stream of its own retention in seconds', async (t) => {
  const ns = testNamespace(t)
  const names = namespaced(ns)
  const nc = await connect({ servers: TEST_NATS_URL })
  t.teardown(() => nc.close())
  const jsm = await ensureStreams(nc, [{ ...names.streams.AUTH_REVOCATIONS, maxAgeSeconds: 7200 }, names.streams.AUTH_EVENTS], { maxAgeDays: 2, replicas: 1 })
  t.equal((await jsm.streams.info(names.streams.AUTH_REVOCATIONS.name)).config.max_age, 7200 * 1e9)
  t.equal((await jsm.streams.info(names.streams.AUTH_EVENTS.name)).config.max_age, 2 * 86400 * 1e9)
})
