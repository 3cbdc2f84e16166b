// billing:replay re-feeds CHAT_USAGE through billing's apply code: applied / already applied / rejected
// counts, dry runs change nothing, and replaying twice changes nothing.
import t from 'tap'
import { testEnv, testDeps, usageEvent, publisher } from '../helper.ts'
import type { Teardown } from '../helper.ts'
import { auditLedger } from '../../src/audit.ts'
import { freePort, waitFor } from '@chat-platform/platform/testing'
import { billingReplay } from '../../src/ops/billing-replay.ts'
import { opsContext, runOps } from './helper.ts'

async function setup (t: Teardown) {
  const env = await testEnv(t, { BILLING_ACK_WAIT_MS: '1000' })
  const { deps } = await testDeps(t, env)
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const snapshot = async () => ({
    rows: (await deps.db.selectFrom('transactions').select(['id', 'balance_after']).orderBy('id').execute()),
    accounts: (await deps.db.selectFrom('accounts').select(['user_id', 'balance']).orderBy('user_id').execute())
  })
  return { env, deps, pub, snapshot }
}

t.test('replay from a sequence applies what billing lacks, then nothing the second time', async (t) => {
  const { env, deps, pub, snapshot } = await setup(t)
  const events = Array.from({ length: 12 }, (_, i) => usageEvent(1 + (i % 3), { prompt_tokens: i + 1 }))
  for (const ev of events) await pub.usage(ev)
  await pub.usage('{broken', 'broken-1')
  await pub.usage(events[0], 'late-copy-of-0')

  const dry = opsContext(env)
  t.equal(await runOps(['billing:replay', '--from-seq', '1', '--dry-run'], dry.make), 0)
  t.same(dry.lines, ['dry run: would apply 12, already applied 1, rejected 1 (read 14 events, stream seq 1–14)'])
  t.same((await snapshot()).rows, [], 'a dry run writes nothing')

  const first = opsContext(env)
  t.equal(await runOps(['billing:replay', '--from-seq', '1'], first.make), 0)
  t.same(first.lines, ['applied 12, already applied 1, rejected 1 (read 14 events, stream seq 1–14)'])
  const after = await snapshot()
  t.equal(after.rows.length, 12 + 3, '12 usage rows and 3 signup bonuses')
  t.equal((await deps.db.selectFrom('dead_letters').selectAll().execute()).length, 1)

  const second = opsContext(env)
  t.equal(await runOps(['billing:replay', '--from-seq', '1'], second.make), 0)
  t.same(second.lines, ['applied 0, already applied 13, rejected 1 (read 14 events, stream seq 1–14)'])
  t.same(await snapshot(), after, 'the second replay changed nothing')
  t.equal((await deps.db.selectFrom('dead_letters').selectAll().execute()).length, 1, 'the rejected event is kept once')

  // The live consumer finds everything applied already.
  await deps.start()
  await waitFor(() => deps.consumers.usage.stats.duplicates === 13, { what: 'consumer saw duplicates' })
  t.equal(deps.consumers.usage.stats.applied, 0)
  t.same(await snapshot(), after)
  t.same((await auditLedger(deps.db)).breaks, [])
})

t.test('replay by time, bounded by --until and by the last sequence at start', async (t) => {
  const { env, deps, pub } = await setup(t)
  await pub.usage(usageEvent(1))
  const mark = new Date(Date.now() + 5)
  await waitFor(() => Date.now() > mark.getTime() + 5)
  const later = [usageEvent(1, { prompt_tokens: 100 }), usageEvent(2, { prompt_tokens: 200 })]
  for (const ev of later) await pub.usage(ev)
  const end = new Date(Date.now() + 5)
  await waitFor(() => Date.now() > end.getTime() + 5)
  await pub.usage(usageEvent(3))

  const ops = opsContext(env)
  t.equal(await runOps(['billing:replay', '--since', mark.toISOString(), '--until', end.toISOString()], ops.make), 0)
  t.same(ops.lines, ['applied 2, already applied 0, rejected 0 (read 2 events, stream seq 2–3)'])
  const ids = (await deps.db.selectFrom('transactions').select('event_id').where('kind', '=', 'usage').execute()).map((r) => r.event_id).sort()
  t.same(ids, later.map((e) => e.event_id).sort())

  const ctx = opsContext(env).make()
  t.teardown(() => ctx.close())
  t.match(await billingReplay(ctx, { fromSeq: 99 }), { read: 0, applied: 0 }, 'past the end: nothing to do')
  t.match(await billingReplay(ctx, { since: new Date(Date.now() + 60_000) }), { read: 0 }, 'after the last event: nothing')
  await t.rejects(billingReplay(ctx, {}), /exactly one/)
})

t.test('bad arguments are refused with a usage error', async (t) => {
  const ops = opsContext({})
  await t.rejects(runOps(['billing:replay'], ops.make), /exactly one/)
  await t.rejects(runOps(['billing:replay', '--from-seq', 'x'], ops.make), /positive integer/)
  await t.rejects(runOps(['billing:replay', '--since', '2024-01-01T00:00:00Z', '--from-seq', '1'], ops.make), /exactly one/)
  await t.rejects(runOps(['usage:reconcile'], ops.make), /--since is required/)
  await t.rejects(runOps(['billing:audit', '--bogus'], ops.make))
})

t.test('a replayed event of a user auth does not know is rejected, never an account opened; auth away stops the run', async (t) => {
  const { buildTestApp: buildAuth } = await import('../../../auth/test/helper.ts')
  const auth = await buildAuth(t)
  const authUrl = await auth.app.listen({ port: 0, host: '127.0.0.1' })
  const user = await auth.register()
  const env = await testEnv(t, { BILLING_CHECK_USERS: 'true', AUTH_URL: authUrl })
  const { deps } = await testDeps(t, env)
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  await pub.usage(usageEvent(user.user_id, { prompt_tokens: 5, completion_tokens: 0 }))
  await pub.usage(usageEvent(987_654_321))

  const away = opsContext({ ...env, AUTH_URL: `http://127.0.0.1:${await freePort()}` })
  await t.rejects(runOps(['billing:replay', '--from-seq', '1'], away.make), /billing:replay stopped: auth could not say whether user \d+ exists: auth GET \/internal\/users\/\d+: no answer \(.*ECONNREFUSED/)
  t.same(await deps.db.selectFrom('transactions').selectAll().execute(), [], 'nothing written')

  const run = opsContext(env)
  t.equal(await runOps(['billing:replay', '--from-seq', '1'], run.make), 0)
  t.same(run.lines, ['applied 1, already applied 0, rejected 1 (read 2 events, stream seq 1–2)'])
  t.same((await deps.db.selectFrom('accounts').select('user_id').execute()).map((r) => Number(r.user_id)), [user.user_id], 'no account for the stranger')
  t.match(await deps.db.selectFrom('dead_letters').select('error').execute(), [{ error: 'set aside by billing:replay: user 987654321 is unknown to auth: not charged, no account opened' }])
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})
