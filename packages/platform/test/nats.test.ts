// NATS_URL parsing (several servers, a user in the URL) and connecting as a user to a server that requires one.
import t from 'tap'
import { connectNats, parseNatsUrl, natsInboxPrefix } from '../src/index.ts'
import { startPrivateNats } from '../src/testing/index.ts'

t.test('one server, several servers, credentials', async (t) => {
  t.same(parseNatsUrl('nats://127.0.0.1:4222'), { servers: ['nats://127.0.0.1:4222'] })
  t.same(parseNatsUrl(' nats://a:4222, nats://b:4222 ,nats://c:4222'), { servers: ['nats://a:4222', 'nats://b:4222', 'nats://c:4222'] }, 'a comma-separated list, spaces trimmed')
  t.same(parseNatsUrl('nats-0:4222'), { servers: ['nats://nats-0:4222'] }, 'host:port without a scheme')
  t.same(parseNatsUrl('nats://chat:p%40ss%3Aw@nats:4222'), { servers: ['nats://nats:4222'], user: 'chat', pass: 'p@ss:w' }, 'user and percent-encoded password taken out of the URL')
  t.same(parseNatsUrl('nats://chat:pw@a:4222,nats://b:4222'), { servers: ['nats://a:4222', 'nats://b:4222'], user: 'chat', pass: 'pw' }, 'credentials on one URL of a list')
  t.throws(() => parseNatsUrl('nats://chat:pw@a:4222,nats://auth:pw@b:4222'), /different users/)
  t.throws(() => parseNatsUrl(' , '), /no server/)
  const err = t.throws(() => parseNatsUrl('nats://chat:secret@[bad')) as Error
  t.notMatch(err.message, /secret/, 'a bad URL is named without its password')
  t.equal(natsInboxPrefix('billing'), '_INBOX.billing')
  t.equal(natsInboxPrefix('a.b'), '_INBOX', 'a name a subject cannot hold keeps the default inbox')
})

t.test('connects with the user from the URL; replies come to the user\'s own inbox', async (t) => {
  const nats = await startPrivateNats(t, {
    config: 'host: 127.0.0.1\nport: {{PORT}}\nauthorization { users = [ { user: svc, password: $PW, permissions: { publish: ["ping.>", "_INBOX.svc.>"], subscribe: ["ping.>", "_INBOX.svc.>"] } } ] }\n',
    env: { PW: 's3cret' }
  })
  const nc = await connectNats({ url: `nats://svc:s3cret@127.0.0.1:${nats.port}`, name: 'test' })
  t.teardown(() => nc.close())
  const sub = nc.subscribe('ping.x')
  ;(async () => { for await (const m of sub) m.respond('pong') })().catch(() => {})
  const reply = await nc.request('ping.x', 'hi', { timeout: 2_000 })
  t.equal(reply.string(), 'pong', 'a request answered through _INBOX.svc.…')
  t.match(reply.subject, /^_INBOX\.svc\./)
  // Requests build no Error objects up front for async stack traces (their cost showed in every publish's profile).
  t.equal((nc as unknown as { options: { noAsyncTraces?: boolean } }).options.noAsyncTraces, true)
  await t.rejects(nc.request('ping.none', 'hi', { timeout: 200 }), { name: /NoRespondersError|TimeoutError|RequestError/ }, 'a request nobody answers still fails with the library\'s error')
})
