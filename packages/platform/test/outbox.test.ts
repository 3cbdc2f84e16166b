// The outbox's promises: an event written with a state change reaches JetStream exactly once, also when
// NATS was down at write time, and several relays never publish a row twice.
import t, { type Test } from 'tap'
import { sql, type Kysely, type Migration } from 'kysely'
import { jetstream, jetstreamManager, DeliverPolicy } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import pino from 'pino'
import { addOutboxClaimIndexMigration, addOutboxLeaseMigration, createDb, createOutboxMigration, outboxClaim, writeOutbox, OutboxRelay, ensureStreams, requeueOutbox, type RelayOptions } from '../src/index.ts'
import { createTestDatabase, testNamespace, startPrivateNats, waitFor, TEST_NATS_URL } from '../src/testing/index.ts'
import { namespaced } from '@chat-platform/contracts'

const SCHEMA = 'outboxtest'
const migrations: Record<string, Migration> = {
  '0001_outbox': createOutboxMigration,
  '0002_outbox_lease': addOutboxLeaseMigration,
  '0002_things': { async up (db) { await db.schema.createTable('things').addColumn('id', 'serial', (c) => c.primaryKey()).addColumn('name', 'text').execute() } },
  '0003_outbox_claim_index': addOutboxClaimIndexMigration
}
const log = pino({ level: 'silent' })

async function setup (t: Test, natsUrl = TEST_NATS_URL) {
  const url = await createTestDatabase(t, { [SCHEMA]: migrations })
  const db = createDb<any>({ url, schema: SCHEMA, poolMax: 4 })
  t.teardown(() => db.destroy())
  const ns = testNamespace(t, natsUrl)
  const names = namespaced(ns)
  const nc = await connect({ servers: natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 100 })
  t.teardown(() => nc.close())
  await ensureStreams(nc, [names.streams.AUTH_EVENTS], { maxAgeDays: 1, replicas: 1 })
  const relay = (pollMs = 50, more: Partial<RelayOptions> = {}) => {
    const r = new OutboxRelay({ db, databaseUrl: url, schema: SCHEMA, js: jetstream(nc), log, pollMs, publishTimeoutMs: 1000, ...more })
    t.teardown(() => r.stop())
    return r
  }
  const subject = names.subject('auth.user.registered')
  const writeThing = (name: string) => db.transaction().execute(async (trx) => {
    await trx.insertInto('things').values({ name }).execute()
    return await writeOutbox(trx, SCHEMA, subject, { user_id: 1, via: 'email', name })
  })
  const streamMessages = async () => {
    const jsm = await jetstreamManager(nc)
    const info = await jsm.streams.info(names.streams.AUTH_EVENTS.name)
    return info.state.messages
  }
  const readAll = async () => {
    const js = jetstream(nc)
    const c = await js.consumers.get(names.streams.AUTH_EVENTS.name, { deliver_policy: DeliverPolicy.All })
    const total = await streamMessages()
    const out: { msgId?: string, data: any }[] = []
    if (total === 0) return out
    const it = await c.consume()
    for await (const m of it) {
      out.push({ msgId: m.headers?.get('Nats-Msg-Id'), data: m.json() })
      if (out.length >= total) break
    }
    return out
  }
  return { db, nc, relay, writeThing, streamMessages, readAll, subject }
}

t.test('an event written with the state change reaches JetStream once, with Nats-Msg-Id = event_id', async (t) => {
  const s = await setup(t)
  const r = s.relay()
  await r.start()
  const ev = await s.writeThing('a')
  await waitFor(async () => (await s.streamMessages()) === 1, { what: 'event in stream' })
  await waitFor(async () => {
    const row = await s.db.selectFrom('outbox').selectAll().where('id', '=', ev.event_id).executeTakeFirst()
    return row?.published_at && row.stream_seq === 1
  }, { what: 'row marked published' })
  const msgs = await s.readAll()
  t.equal(msgs.length, 1)
  t.equal(msgs[0].msgId, ev.event_id)
  t.equal(msgs[0].data.event_id, ev.event_id)
  t.equal(msgs[0].data.name, 'a')
  t.match(msgs[0].data.occurred_at, /Z$/)
})

t.test('a rolled-back transaction publishes nothing', async (t) => {
  const s = await setup(t)
  const r = s.relay()
  await r.start()
  await t.rejects(s.db.transaction().execute(async (trx) => {
    await writeOutbox(trx, SCHEMA, s.subject, { user_id: 2, via: 'email' })
    throw new Error('business rule failed')
  }))
  const ev = await s.writeThing('after')
  await waitFor(async () => (await s.streamMessages()) >= 1, { what: 'later event' })
  const msgs = await s.readAll()
  t.same(msgs.map((m) => m.data.event_id), [ev.event_id], 'only the committed event')
})

t.test('two relays over 200 events publish every event exactly once', async (t) => {
  const s = await setup(t)
  const events: { event_id: string }[] = []
  for (let i = 0; i < 200; i++) events.push(await s.writeThing(`n${i}`))
  const r1 = s.relay(20)
  const r2 = s.relay(20)
  await Promise.all([r1.start(), r2.start()])
  await waitFor(async () => {
    const { n } = await s.db.selectFrom('outbox').select((eb) => eb.fn.countAll<number>().as('n')).where('published_at', 'is', null).executeTakeFirstOrThrow()
    return Number(n) === 0
  }, { what: 'all published', timeoutMs: 20_000 })
  t.equal(r1.published + r2.published, 200, 'each row published by exactly one relay')
  t.equal(await s.streamMessages(), 200)
  const ids = new Set((await s.readAll()).map((m) => m.data.event_id))
  t.equal(ids.size, 200)
  for (const e of events) t.ok(ids.has(e.event_id))
})

t.test('re-publishing a row (requeue) inside the window does not duplicate it in the stream', async (t) => {
  const s = await setup(t)
  const r = s.relay()
  await r.start()
  const ev = await s.writeThing('x')
  await waitFor(async () => (await s.streamMessages()) === 1)
  t.equal(await requeueOutbox(s.db, SCHEMA, [ev.event_id]), 1)
  await waitFor(async () => {
    const row = await s.db.selectFrom('outbox').select('published_at').where('id', '=', ev.event_id).executeTakeFirstOrThrow()
    return row.published_at !== null
  }, { what: 're-published' })
  t.equal(r.published, 2, 'published twice')
  t.equal(await s.streamMessages(), 1, 'JetStream de-duplicated by Nats-Msg-Id')
})

t.test('events written while NATS is down are published once when it returns', async (t) => {
  const nats = await startPrivateNats(t)
  const s = await setup(t, nats.url)
  const r = s.relay(50)
  await r.start()
  await nats.stop()
  const written: { event_id: string }[] = []
  for (let i = 0; i < 5; i++) written.push(await s.writeThing(`down${i}`))
  await waitFor(async () => {
    const row = await s.db.selectFrom('outbox').select(['attempts', 'published_at']).where('id', '=', written[0].event_id).executeTakeFirstOrThrow()
    return row.attempts > 0 && row.published_at === null
  }, { what: 'a failed publish attempt while NATS is down', timeoutMs: 15_000 })
  await nats.start()
  await waitFor(async () => {
    const { n } = await s.db.selectFrom('outbox').select((eb) => eb.fn.countAll<number>().as('n')).where('published_at', 'is', null).executeTakeFirstOrThrow()
    return Number(n) === 0
  }, { what: 'all published after NATS returned', timeoutMs: 30_000 })
  const msgs = await s.readAll()
  t.same(msgs.map((m) => m.data.event_id).sort(), written.map((w) => w.event_id).sort(), 'each event exactly once')
  t.ok(await sql`select 1`.execute(s.db))
})

interface PlanNode { 'Node Type': string, 'Index Name'?: string, Plans?: PlanNode[] }
const planNodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(planNodes)]
async function claimPlan (db: Kysely<any>): Promise<PlanNode[]> {
  const { rows } = await sql<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>`explain (format json) ${outboxClaim(100)}`.execute(db)
  return planNodes(rows[0]['QUERY PLAN'][0].Plan)
}
const sorts = (nodes: PlanNode[]) => nodes.filter((n) => n['Node Type'].includes('Sort')).map((n) => n['Node Type'])
const claimIndexScan = (nodes: PlanNode[]) => nodes.some((n) => n['Node Type'] === 'Index Scan' && n['Index Name'] === 'outbox_claim')

t.test('the claim reads the (created_at, id) index in order, without sorting rows that share a created_at', async (t) => {
  const s = await setup(t)
  // 3,000 unpublished rows, 500 per created_at (as a statement writing many events, or a backlog), after 2,000 published.
  await sql`insert into outbox (id, subject, payload, created_at, published_at)
    select gen_random_uuid(), ${s.subject}, '{}', timestamptz '2026-01-01' + (g / 500) * interval '1 ms', case when g <= 2000 then now() end
    from generate_series(1, 5000) g`.execute(s.db)
  await sql`analyze outbox`.execute(s.db)
  const plan = await claimPlan(s.db)
  t.ok(claimIndexScan(plan), 'an index scan of outbox_claim')
  t.same(sorts(plan), [], 'no sort node')

  // The index the migration replaced (its down restores it) sorts the same claim: the data is the case it fixes.
  await addOutboxClaimIndexMigration.down!(s.db)
  await sql`analyze outbox`.execute(s.db)
  const before = await claimPlan(s.db)
  t.notOk(claimIndexScan(before), 'outbox_claim is gone after down')
  t.not(sorts(before).length, 0, `the created_at index alone sorts (${sorts(before).join(', ')})`)
})

t.test('a relay claims the oldest rows first, ties by id, and publishes them in that order', async (t) => {
  const s = await setup(t)
  // 30 rows, 9-10 per created_at, written newest first: neither insertion order nor id order alone is the claim order.
  await sql`insert into outbox (id, subject, payload, created_at)
    select gen_random_uuid(), ${s.subject}, jsonb_build_object('g', g), timestamptz '2026-01-01' + ((30 - g) / 10) * interval '1 ms'
    from generate_series(0, 29) g`.execute(s.db)
  const expected = await s.db.selectFrom('outbox').select('id').orderBy('created_at').orderBy('id').limit(15).execute()
  const r = s.relay(50, { batchSize: 15 }) // not started: one claim by hand
  t.same(await r.publishBatch(), { claimed: 15, ok: true })
  const published = await s.db.selectFrom('outbox').select('id').where('published_at', 'is not', null).orderBy('stream_seq').execute()
  t.same(published.map((p) => p.id), expected.map((p) => p.id), 'the first 15 by (created_at, id), in stream order')
})
