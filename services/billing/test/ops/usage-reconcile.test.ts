// usage:reconcile asks the real chat service what it recorded and billing what it applied, and has chat
// re-publish the gap through its outbox. The gap is made the way JetStream makes it: chat's outbox counts
// two events as published (acknowledged) that never reached a consumer.
import t from 'tap'
import { sql } from 'kysely'
import { freePort, waitFor } from '@chat-platform/platform/testing'
import { testEnv, testDeps } from '../helper.ts'
import { buildTestApp as buildChat } from '../../../chat/test/helper.ts'
import { loadBillingConfig } from '../../src/config.ts'
import { buildApp } from '../../src/app.ts'
import { ServiceCallError } from '@chat-platform/platform'
import { opsContext, runOps } from './helper.ts'

const INTERNAL_TOKEN = 'reconcile-test-internal-token'

t.test('events billing never received are re-published by chat and then applied; a second run finds none', async (t) => {
  // Both services and ops share INTERNAL_TOKEN: every internal call below carries it.
  const env = await testEnv(t, { INTERNAL_TOKEN })
  const { deps } = await testDeps(t, env)
  const billing = buildApp(deps, loadBillingConfig(env))
  t.teardown(() => billing.close())
  const billingUrl = await billing.listen({ port: 0, host: '127.0.0.1' })
  await deps.start()

  const chat = await buildChat(t, { EVENTS_NAMESPACE: env.EVENTS_NAMESPACE, BILLING_URL: billingUrl, INTERNAL_TOKEN })
  const chatUrl = await chat.app.listen({ port: 0, host: '127.0.0.1' })
  const since = new Date(Date.now() - 60_000).toISOString()

  // Five exchanges while chat's relay is stopped, so nothing is published yet.
  await chat.deps.relay.stop()
  const session = await chat.createSession(7)
  for (let i = 0; i < 5; i++) t.equal((await chat.send(7, session.id, `question ${i}`)).statusCode, 200)
  const rows = await chat.deps.db.selectFrom('outbox').select('id').orderBy('created_at').execute()
  t.equal(rows.length, 5)
  // Two are "acknowledged by JetStream and then lost": marked published, never in the stream.
  const lost = rows.slice(0, 2).map((r) => r.id)
  await sql`update outbox set published_at = now() where id = any(${lost}::uuid[])`.execute(chat.deps.db)
  await chat.deps.relay.start()
  await waitFor(() => deps.consumers.usage.stats.applied === 3, { what: 'the three delivered events applied' })
  // The relay marks its rows in a statement after the publish: billing may apply before that lands.
  await waitFor(async () => (await chat.deps.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute()).length === 0, { what: 'the relay marked its rows' })

  const urls = { CHAT_URL: chatUrl, BILLING_URL: billingUrl }
  const args = ['usage:reconcile', '--since', since, '--until', new Date(Date.now() + 60_000).toISOString()]

  const dry = opsContext({ ...env, ...urls })
  t.equal(await runOps([...args, '--dry-run'], dry.make), 0)
  t.equal(dry.lines[0], 'chat recorded 5, billing applied 3, missing 2 (dry run: nothing requeued)')
  t.same(dry.lines.slice(1).sort(), lost.map((id) => `  missing ${id}`).sort())
  const stillPublished = await chat.deps.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute()
  t.same(stillPublished, [], 'a dry run requeues nothing')

  const run = opsContext({ ...env, ...urls })
  t.equal(await runOps(args, run.make), 0)
  t.equal(run.lines[0], 'chat recorded 5, billing applied 3, missing 2, requeued 2')
  await waitFor(() => deps.consumers.usage.stats.applied === 5, { what: 'the missing two applied' })

  const again = opsContext({ ...env, ...urls })
  t.equal(await runOps(args, again.make), 0)
  t.same(again.lines, ['chat recorded 5, billing applied 5, missing 0, requeued 0'])

  const wrongToken = opsContext({ ...env, ...urls, INTERNAL_TOKEN: 'not-the-internal-token' })
  const refused = await runOps(args, wrongToken.make).catch((e) => e)
  t.type(refused, ServiceCallError)
  t.equal(refused.describe(), `chat (${chatUrl}) GET /internal/usage answered 403 forbidden: The internal token is wrong.`)
})

t.test('an unreachable service fails the run instead of reporting a false gap, naming the service and the cause', async (t) => {
  const env = await testEnv(t)
  const down = `http://127.0.0.1:${await freePort()}`
  const ops = opsContext({ ...env, CHAT_URL: down, BILLING_URL: down })
  const err = await runOps(['usage:reconcile', '--since', '2020-01-01T00:00:00Z'], ops.make).catch((e) => e)
  t.match(err, { code: 'service_unavailable', service: `chat (${down})`, status: null })
  t.equal(err.describe(), `chat (${down}) GET /internal/usage: no answer (connect ECONNREFUSED ${down.slice(7)})`)
})

t.test('a service that answers an error: the run fails with its name, status and detail', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  const billing = buildApp(deps, loadBillingConfig(env))
  t.teardown(() => billing.close())
  const billingUrl = await billing.listen({ port: 0, host: '127.0.0.1' })
  const chat = await buildChat(t, { EVENTS_NAMESPACE: env.EVENTS_NAMESPACE, BILLING_URL: billingUrl })
  const chatUrl = await chat.app.listen({ port: 0, host: '127.0.0.1' })
  // Billing's database is gone: its /internal/usage-events answers 503 with a problem.
  await deps.db.destroy()
  const ops = opsContext({ ...env, CHAT_URL: chatUrl, BILLING_URL: billingUrl })
  const err = await runOps(['usage:reconcile', '--since', '2020-01-01T00:00:00Z'], ops.make).catch((e) => e)
  t.type(err, ServiceCallError)
  t.match(err.describe(), new RegExp(`^billing \\(${billingUrl.replace(/[.:/]/g, '\\$&')}\\) GET /internal/usage-events answered 5\\d\\d \\w+: .+`))
})

t.test('a window with nothing settled yet exits 0 and says so, asking no service', async (t) => {
  const env = await testEnv(t)
  // Nothing listens here: a call would fail the run.
  const urls = { CHAT_URL: 'http://127.0.0.1:9', BILLING_URL: 'http://127.0.0.1:9' }
  const recentSince = new Date(Date.now() - 10_000).toISOString()
  const recent = opsContext({ ...env, ...urls })
  t.equal(await runOps(['usage:reconcile', '--since', recentSince], recent.make), 0)
  t.same(recent.lines, [`nothing settled yet: --since ${recentSince} is within the last 60 s (events that recent may still be on their way; give --until to include them)`])

  const inverted = opsContext({ ...env, ...urls })
  t.equal(await runOps(['usage:reconcile', '--since', '2030-01-02T00:00:00Z', '--until', '2030-01-01T00:00:00Z'], inverted.make), 0)
  t.same(inverted.lines, ['nothing to compare: --since 2030-01-02T00:00:00.000Z is not before --until 2030-01-01T00:00:00.000Z'])

  const same = opsContext({ ...env, ...urls })
  t.equal(await runOps(['usage:reconcile', '--since', '2030-01-01T00:00:00Z', '--until', '2030-01-01T00:00:00Z', '--dry-run'], same.make), 0, 'an empty window')
})
