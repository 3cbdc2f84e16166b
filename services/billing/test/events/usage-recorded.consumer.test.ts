// The usage and signup consumers against real JetStream and Postgres: exactly-once application under
// redelivery, duplicates, two replicas, a crash between commit and ack, and malformed events.
import t from 'tap'
import { jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { namespaced } from '@chat-platform/contracts'
import { waitFor, TEST_NATS_URL } from '@chat-platform/platform/testing'
import { testEnv, testDeps, usageEvent, registeredEvent, publisher, ledgerOf } from '../helper.ts'
import { auditLedger } from '../../src/audit.ts'
import { buildApp } from '../../src/app.ts'
import { loadBillingConfig } from '../../src/config.ts'
import { balanceCacheKey as balanceKey } from '@chat-platform/contracts'
import { createUsageConsumer, USAGE_CONSUMER } from '../../src/events/usage-recorded.consumer.ts'

const usageRows = async (deps: Awaited<ReturnType<typeof testDeps>>['deps']) =>
  await deps.db.selectFrom('transactions').selectAll().where('kind', '=', 'usage').execute()

t.test('a usage event is priced, described and applied with its provenance; the Redis copy follows', async (t) => {
  const env = await testEnv(t, { MODEL_PRICES: '{"gpt-4o-mini":{"input":0.5,"output":1.5}}' })
  const { deps } = await testDeps(t, env)
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const ev = usageEvent(1, { prompt_tokens: 812, completion_tokens: 230 })
  const est = usageEvent(1, { model: 'other', prompt_tokens: 3, completion_tokens: 4, usage_source: 'estimated' })
  await pub.usage(ev)
  await pub.usage(est)
  await waitFor(async () => (await usageRows(deps)).length === 2, { what: 'two usage rows' })
  const rows = await ledgerOf(deps, 1)
  t.match(rows[0], { kind: 'signup_bonus', change_amount: 1000 })
  const charged = rows.find((r) => r.event_id === ev.event_id)!
  // ceil(812 × 0.5 + 230 × 1.5) = ceil(406 + 345) = 751
  t.match(charged, {
    change_amount: -751,
    description: '对话消耗 · gpt-4o-mini · 输入 812 + 输出 230',
    model: 'gpt-4o-mini',
    prompt_tokens: 812,
    completion_tokens: 230,
    input_ratio: 0.5,
    output_ratio: 1.5,
    usage_source: 'provider',
    source_id: ev.event_id
  })
  t.match(rows.find((r) => r.event_id === est.event_id), { change_amount: -7, description: '对话消耗 · other · 输入 3 + 输出 4 · 估算', usage_source: 'estimated', input_ratio: 1 })
  await waitFor(async () => (await deps.redis.get(balanceKey(1))) === `${1000 - 751 - 7}:0`, { what: 'redis copy' })
  t.equal(deps.consumers.usage.stats.applied, 2)
})

t.test('the same event delivered many times (new msg ids, replays) is applied once', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const ev = usageEvent(3, { prompt_tokens: 100, completion_tokens: 0 })
  // Inside the dedup window JetStream drops exact msg-id repeats; other ids model repeats after the window.
  await pub.usage(ev)
  await pub.usage(ev)
  for (let i = 0; i < 5; i++) await pub.usage(ev, `${ev.event_id}-${i}`)
  await waitFor(() => deps.consumers.usage.stats.applied + deps.consumers.usage.stats.duplicates === 6, { what: '6 deliveries handled' })
  t.equal(deps.consumers.usage.stats.applied, 1)
  t.equal((await usageRows(deps)).length, 1)
  t.equal((await ledgerOf(deps, 3)).at(-1)!.balance_after, 900)
})

t.test('malformed events are set aside in dead_letters and the rest is applied', async (t) => {
  const env = await testEnv(t, { BILLING_BATCH_SIZE: '10' })
  const { deps } = await testDeps(t, env)
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const good = [usageEvent(1), usageEvent(2), usageEvent(1)]
  await pub.usage(good[0])
  await pub.usage('{not json', 'bad-1')
  await pub.usage({ ...usageEvent(1), prompt_tokens: -4 }, 'bad-2')
  await pub.usage({ ...usageEvent(1), event_id: 'not-a-uuid' }, 'bad-3')
  await pub.usage(good[1])
  // Valid by schema, but more tokens than the ledger column holds: the database refuses it every time.
  await pub.usage(usageEvent(2, { prompt_tokens: 2 ** 40 }))
  await pub.usage(good[2])
  await deps.start()
  await waitFor(async () => (await usageRows(deps)).length === 3 && deps.consumers.usage.stats.deadLettered === 4, { what: 'good applied, bad set aside' })
  const letters = await deps.db.selectFrom('dead_letters').selectAll().orderBy('stream_seq').execute()
  t.equal(letters.length, 4)
  t.same(letters.map((l) => l.stream_seq), [2, 3, 4, 6])
  t.equal(letters[0].payload, '{not json')
  t.match(letters[0].error, /not JSON/)
  t.match(letters[1].error, /prompt_tokens/)
  t.match(letters[2].error, /event_id/)
  t.match(letters[3].error, /rejected by the database/)
  t.equal(letters[0].stream, namespaced(env.EVENTS_NAMESPACE).streams.CHAT_USAGE.name)
  // Nothing is left pending for redelivery: the bad ones were terminated, the good ones acked.
  const jsm = await jetstreamManager(deps.nc)
  await waitFor(async () => {
    const info = await jsm.consumers.info(namespaced(env.EVENTS_NAMESPACE).streams.CHAT_USAGE.name, USAGE_CONSUMER)
    return info.num_ack_pending === 0 && info.num_pending === 0
  }, { what: 'consumer fully acked' })
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
  const app = buildApp(deps, loadBillingConfig(env))
  t.teardown(() => app.close())
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /# TYPE billing_consumer_events_total counter/, 'a counter')
  t.match(metrics, /billing_consumer_events_total\{consumer="usage",outcome="dead_lettered"[^}]*\} 4/, 'set-aside events are counted')
  t.match(metrics, /billing_consumer_events_total\{consumer="usage",outcome="applied"[^}]*\} 3/)
  t.equal((await app.inject({ method: 'GET', url: '/metrics' })).body.match(/billing_consumer_events_total\{consumer="usage",outcome="applied"[^}]*\} (\d+)/)?.[1], '3', 'a second scrape counts the same events once')
})

t.test('a batch the database refuses falls back to one event per transaction', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const good = [usageEvent(1), usageEvent(2)]
  await pub.usage(good[0])
  await pub.usage(usageEvent(1, { completion_tokens: 2 ** 40 }))
  await pub.usage(good[1])
  const reader = await jetstream(deps.nc).consumers.get(namespaced(env.EVENTS_NAMESPACE).streams.CHAT_USAGE.name, { filter_subjects: namespaced(env.EVENTS_NAMESPACE).subject('chat.usage.recorded') })
  const msgs: JsMsg[] = []
  for await (const m of await reader.fetch({ max_messages: 3, expires: 2000 })) {
    msgs.push(m)
    if (msgs.length === 3) break
  }
  await deps.consumers.usage.processBatch(msgs)
  t.match(deps.consumers.usage.stats, { batches: 4, batchFallbacks: 1, applied: 2, deadLettered: 1 })
  t.same((await usageRows(deps)).map((r) => r.event_id).sort(), good.map((e) => e.event_id).sort())
})

t.test('two billing instances on one durable consumer apply each event exactly once', async (t) => {
  const env = await testEnv(t, { BILLING_BATCH_SIZE: '8' })
  const a = await testDeps(t, env)
  const b = await testDeps(t, env)
  await a.deps.start()
  await b.deps.start()
  const pub = publisher(a.deps, env.EVENTS_NAMESPACE)
  const events = Array.from({ length: 300 }, (_, i) => usageEvent(1 + (i % 7), { prompt_tokens: 1 + i, completion_tokens: 2 }))
  await Promise.all(events.map((ev) => pub.usage(ev)))
  // The counters move after each batch's commit, so they can trail the rows for a moment: wait for both.
  const count = () => a.deps.consumers.usage.stats.applied + b.deps.consumers.usage.stats.applied
  await waitFor(async () => (await usageRows(a.deps)).length === 300 && count() >= 300, { what: '300 usage rows, counted', timeoutMs: 30_000 })
  const applied = count()
  t.equal(applied, 300, 'every event applied by exactly one instance')
  t.ok(a.deps.consumers.usage.stats.applied > 0 && b.deps.consumers.usage.stats.applied > 0, 'both instances took part')
  const expected = new Map<number, number>()
  for (const ev of events) expected.set(ev.user_id, (expected.get(ev.user_id) ?? 1000) - ev.prompt_tokens - 2)
  for (const [userId, balance] of expected) {
    const acc = await a.deps.db.selectFrom('accounts').select('balance').where('user_id', '=', userId).executeTakeFirstOrThrow()
    t.equal(acc.balance, balance, `user ${userId}`)
  }
  t.same((await auditLedger(a.deps.db)).breaks, [])
})

t.test('overlapping batches (BILLING_BATCH_CONCURRENCY) charge the same users once each, and Redis ends on the newest balance', async (t) => {
  const env = await testEnv(t, { BILLING_BATCH_SIZE: '5', BILLING_BATCH_CONCURRENCY: '4' })
  const { deps } = await testDeps(t, env)
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  // A backlog for five users: every batch of five holds each of them, so overlapping batches contend for the same
  // account rows. 50 events arrive a second time (other msg ids) at the end: duplicates.
  const events = Array.from({ length: 400 }, (_, i) => usageEvent(21 + (i % 5), { prompt_tokens: 1 + (i % 13), completion_tokens: 1 }))
  await Promise.all(events.map((ev) => pub.usage(ev)))
  await Promise.all(events.slice(0, 50).map((ev) => pub.usage(ev, `${ev.event_id}-again`)))
  await deps.start()
  await waitFor(() => deps.consumers.usage.stats.applied + deps.consumers.usage.stats.duplicates === 450, { what: '450 deliveries handled', timeoutMs: 60_000 })
  const stats = deps.consumers.usage.stats
  t.ok(stats.peakInFlight > 1, `batches overlapped (peak ${stats.peakInFlight})`)
  t.ok(stats.peakInFlight <= 4, 'never more than the configured number at once')
  t.equal(stats.batchFallbacks, 0, 'no batch failed (a deadlock between overlapping batches would)')
  t.equal(stats.applied, 400)
  t.equal(stats.duplicates, 50)
  t.equal((await usageRows(deps)).length, 400)
  const expected = new Map<number, number>()
  for (const ev of events) expected.set(ev.user_id, (expected.get(ev.user_id) ?? 1000) - ev.prompt_tokens - 1)
  for (const [userId, balance] of expected) {
    const acc = await deps.db.selectFrom('accounts').select('balance').where('user_id', '=', userId).executeTakeFirstOrThrow()
    t.equal(acc.balance, balance, `user ${userId}`)
    // Commits reach Redis in any order; the version guard keeps the last one.
    await waitFor(async () => (await deps.redis.get(balanceKey(userId)))?.startsWith(`${balance}:`), { what: `redis copy of user ${userId}` })
  }
  t.same((await auditLedger(deps.db)).breaks, [])
})

t.test('BILLING_BATCH_CONCURRENCY must leave pool connections for requests', async (t) => {
  t.equal(loadBillingConfig({}).BILLING_BATCH_CONCURRENCY, 4)
  t.throws(() => loadBillingConfig({ BILLING_BATCH_CONCURRENCY: '5' }), /BILLING_BATCH_CONCURRENCY: 5 needs DATABASE_POOL_MAX of at least 12/)
  t.equal(loadBillingConfig({ BILLING_BATCH_CONCURRENCY: '5', DATABASE_POOL_MAX: '12' }).BILLING_BATCH_CONCURRENCY, 5)
})

t.test('an instance that dies between commit and ack does not double-charge on redelivery', async (t) => {
  const env = await testEnv(t, { BILLING_ACK_WAIT_MS: '500' })
  const survivor = await testDeps(t, env)
  const pub = publisher(survivor.deps, env.EVENTS_NAMESPACE)
  // The doomed instance: its own connection, closed right after its commit, before any ack leaves.
  const nc = await connect({ servers: TEST_NATS_URL })
  t.teardown(() => nc.close().catch(() => {}))
  let committed = 0
  const doomed = createUsageConsumer({
    nc,
    books: survivor.deps,
    log: survivor.deps.log,
    namespace: env.EVENTS_NAMESPACE,
    rules: survivor.deps.rules,
    ackWaitMs: 500,
    batchSize: 10,
    retryDelayMs: 50,
    beforeAck: async (msgs) => { committed += msgs.length; await nc.close() }
  })
  t.teardown(() => doomed.stop())
  const events = [usageEvent(8, { prompt_tokens: 40, completion_tokens: 2 }), usageEvent(8, { prompt_tokens: 50, completion_tokens: 8 })]
  for (const ev of events) await pub.usage(ev)
  await doomed.start()
  await waitFor(() => committed === 2, { what: 'the doomed instance committed' })
  t.equal((await usageRows(survivor.deps)).length, 2, 'committed before it died')

  await survivor.deps.start()
  await waitFor(() => survivor.deps.consumers.usage.stats.duplicates >= 2, { what: 'redelivery reached the survivor', timeoutMs: 15_000 })
  t.equal(survivor.deps.consumers.usage.stats.applied, 0, 'nothing applied twice')
  t.equal((await usageRows(survivor.deps)).length, 2)
  t.equal((await ledgerOf(survivor.deps, 8)).at(-1)!.balance_after, 1000 - 42 - 58)
})

t.test('the signup bonus comes from auth.user.registered or the first access, whichever is first, once', async (t) => {
  const env = await testEnv(t, { SIGNUP_BONUS: '500' })
  const { deps } = await testDeps(t, env)
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const first = registeredEvent(20)
  await pub.registered(first)
  await pub.registered(registeredEvent(20, { via: 'wechat' }))
  // User 21 spends before the registration event arrives: the usage opens the account, the event adds nothing.
  await pub.usage(usageEvent(21, { prompt_tokens: 5, completion_tokens: 5 }))
  await waitFor(() => deps.consumers.usage.stats.applied === 1, { what: 'usage of 21' })
  await pub.registered(registeredEvent(21))
  await pub.registered({ user_id: 'x' })
  await waitFor(() => deps.consumers.signup.stats.applied === 3 && deps.consumers.signup.stats.deadLettered === 1, { what: 'signup events' })
  t.match(await ledgerOf(deps, 20), [{ kind: 'signup_bonus', change_amount: 500, balance_after: 500, event_id: null }])
  t.match(await ledgerOf(deps, 21), [{ kind: 'signup_bonus', change_amount: 500 }, { kind: 'usage', change_amount: -10, balance_after: 490 }])
  t.equal((await ledgerOf(deps, 21)).length, 2)
  await waitFor(async () => (await deps.redis.get(balanceKey(20))) === '500:0', { what: 'redis copy' })
})

t.test('stop() finishes the batches in flight; a restarted consumer resumes where the durable left off', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  await deps.start()
  await pub.usage(usageEvent(1))
  await waitFor(() => deps.consumers.usage.stats.applied === 1, { what: 'first' })
  await deps.stop()
  await pub.usage(usageEvent(1))
  const again = await testDeps(t, env)
  await again.deps.start()
  await waitFor(() => again.deps.consumers.usage.stats.applied === 1, { what: 'second by the new instance' })
  t.equal(again.deps.consumers.usage.stats.duplicates, 0, 'the first was not redelivered')
  t.equal((await usageRows(deps)).length, 2)
})

t.test('events arriving close together share a transaction (BILLING_BATCH_LINGER_MS), each applied once', async (t) => {
  const env = await testEnv(t, { BILLING_BATCH_LINGER_MS: '200' })
  const { deps } = await testDeps(t, env)
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const events = Array.from({ length: 20 }, (_, i) => usageEvent(40 + (i % 4), { prompt_tokens: 10, completion_tokens: 0 }))
  for (const ev of events) await pub.usage(ev)
  await waitFor(() => deps.consumers.usage.stats.applied === 20, { what: '20 events applied' })
  t.ok(deps.consumers.usage.stats.batches <= 5, `20 events in ${deps.consumers.usage.stats.batches} transactions`)
  for (let u = 40; u < 44; u++) t.equal((await ledgerOf(deps, u)).at(-1)!.balance_after, 1000 - 5 * 10, `user ${u}: five charges`)
})

t.test('a title event (purpose title, no message) is applied once and described as a title; events without purpose stay exchanges', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  const title = usageEvent(5, { message_id: null, purpose: 'title', prompt_tokens: 60, completion_tokens: 7 })
  const old = usageEvent(5, { prompt_tokens: 10, completion_tokens: 2 })
  t.notOk('purpose' in old, 'an event as chat wrote it before purpose existed')
  await pub.usage(title)
  await pub.usage(title, `${title.event_id}-again`)
  await pub.usage(old)
  await waitFor(() => deps.consumers.usage.stats.applied + deps.consumers.usage.stats.duplicates === 3, { what: 'three deliveries handled' })
  t.equal(deps.consumers.usage.stats.applied, 2, 'the title applied once')
  const rows = await ledgerOf(deps, 5)
  t.match(rows.find((r) => r.event_id === title.event_id), { kind: 'usage', change_amount: -67, description: '会话标题 · gpt-4o-mini · 输入 60 + 输出 7', prompt_tokens: 60, completion_tokens: 7 })
  t.match(rows.find((r) => r.event_id === old.event_id), { change_amount: -12, description: '对话消耗 · gpt-4o-mini · 输入 10 + 输出 2' })
})
