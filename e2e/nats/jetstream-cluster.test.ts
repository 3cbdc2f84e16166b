// JetStream as a 3-node cluster (DESIGN §6.5): the real processes on three nats-server nodes with every stream at 3
// replicas; the CHAT_USAGE leader is SIGKILLed while users chat, and restarted. No event is lost or applied twice.
import t from 'tap'
import pg from 'pg'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager, type StreamInfo } from '@nats-io/jetstream'
import { namespaced, Subjects } from '@chat-platform/contracts'
import { startNatsCluster, waitFor } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from '../support/system.ts'
import { runTraffic, settleRecharges } from '../support/traffic.ts'
import { assertAuditPasses, assertExactBalance, recharge, registerUser, type User } from '../support/client.ts'

t.setTimeout(240_000)

const cluster = await startNatsCluster(t)
const sim = await startSimulator({ chunkDelayMs: 1 })
t.teardown(() => sim.close())
const system = await startSystem(t, {
  natsUrl: cluster.url,
  env: {
    STREAM_REPLICAS: '3',
    OPENAI_BASE_URL: sim.url,
    OPENAI_API_KEY: 'sk-e2e',
    AUTH_RATE_LIMIT_MAX: '1000',
    RATE_LIMIT_MAX: '5000',
    BILLING_ACK_WAIT_MS: '3000',
    BILLING_RETRY_DELAY_MS: '300'
  }
})
const names = namespaced(system.env.EVENTS_NAMESPACE)
const USAGE = names.streams.CHAT_USAGE.name

const nc = await connect({ servers: cluster.nodes.map((n) => n.url), maxReconnectAttempts: -1, reconnectTimeWait: 200 })
t.teardown(() => nc.close())
const jsm = await jetstreamManager(nc, { timeout: 2_000 })
const db = new pg.Client({ connectionString: system.databaseUrl })
await db.connect()
t.teardown(() => db.end())

/** The stream's state as the cluster reports it; undefined while it cannot answer (no leader yet). */
const info = (name: string): Promise<StreamInfo | undefined> => jsm.streams.info(name).catch(() => undefined)

t.test('the streams are replicated on the three nodes', async (t) => {
  for (const s of [names.streams.AUTH_EVENTS.name, USAGE]) {
    const i = (await waitFor(async () => { const x = await info(s); return x?.cluster?.leader && x.cluster.replicas?.length === 2 ? x : undefined }, { what: `${s} with a leader and two replicas` }))!
    t.equal(i.config.num_replicas, 3, `${s}: 3 replicas (STREAM_REPLICAS)`)
    t.same([i.cluster!.leader, ...i.cluster!.replicas!.map((r) => r.name)].sort(), ['n0', 'n1', 'n2'], `${s}: on every node`)
  }
})

t.test('the CHAT_USAGE leader killed mid-load and restarted: every exchange charged exactly once', async (t) => {
  const users: User[] = []
  for (let i = 0; i < 4; i++) {
    const u = await registerUser(system, `cluster${i}`)
    t.equal((await recharge(system, u, 200_000)).status, 200)
    users.push(u)
  }
  let killed: string | undefined
  let newLeader: string | undefined
  let faultRun: Promise<void> | undefined
  let ops = 0
  let trafficDone = false
  let opsWhileDown = 0
  const fault = async () => {
    const before = (await waitFor(() => info(USAGE), { what: 'stream info' }))!
    killed = before.cluster!.leader!
    const at = before.state.messages
    const opsAtKill = ops
    const killedAt = Date.now()
    await cluster.node(killed).stop()
    t.comment(`SIGKILLed ${killed}, the CHAT_USAGE leader, with ${at} events stored`)
    // Two nodes of three keep a quorum: a new leader is elected and usage keeps flowing into the stream.
    const after = (await waitFor(async () => { const x = await info(USAGE); return x?.cluster?.leader && x.cluster.leader !== killed && x.state.messages > at ? x : undefined }, { timeoutMs: 30_000, intervalMs: 100, what: 'a new leader storing events' }))!
    newLeader = after.cluster!.leader
    t.comment(`${newLeader} leads CHAT_USAGE and stores events ${Date.now() - killedAt} ms after the kill`)
    // A user registering meanwhile: AUTH_EVENTS keeps working on two nodes too.
    const late = await registerUser(system, 'cluster-late')
    users.push(late)
    const opsAt = ops
    await waitFor(() => trafficDone || ops >= opsAt + 8, { timeoutMs: 30_000, what: 'traffic while a node is down' })
    opsWhileDown = ops - opsAtKill
    await cluster.node(killed).start()
    t.comment(`restarted ${killed}`)
  }
  const result = await runTraffic(system, users.slice(), {
    opsPerWorker: 30,
    workersPerUser: 2,
    maxMs: 60_000,
    onOp: (n) => { ops = n; if (n === 10) faultRun = fault() }
  }).finally(() => { trafficDone = true })
  await faultRun
  t.ok(opsWhileDown >= 8, `users kept going while ${killed} was down (${opsWhileDown} operations)`)
  t.ok(killed && newLeader && newLeader !== killed, `leadership moved from ${killed} to ${newLeader}`)
  t.same(result.unexpected, [], 'no unexpected answer (500s, dropped connections)')
  t.ok((result.statuses['send 200'] ?? 0) + (result.statuses['stream 200'] ?? 0) > 10, `users kept chatting (${JSON.stringify(result.statuses)})`)
  await settleRecharges(system, result.pending)

  // The restarted node catches up: it is a current replica again.
  await waitFor(async () => {
    const x = await info(USAGE)
    const peers = [x?.cluster?.leader, ...(x?.cluster?.replicas ?? []).filter((r) => r.current && !r.offline).map((r) => r.name)]
    return peers.includes(killed)
  }, { timeoutMs: 60_000, intervalMs: 200, what: `${killed} current again` })

  for (const u of users) await assertExactBalance(t, system, u, { timeoutMs: 60_000 })
  // Event by event: every usage event chat recorded was published, stored and applied once.
  await waitFor(async () => (await db.query('select count(*)::int as n from chat.outbox where published_at is null')).rows[0].n === 0, { timeoutMs: 30_000, what: 'chat outbox drained' })
  const recorded = (await db.query('select id from chat.outbox where subject = $1', [names.subject(Subjects.usageRecorded)])).rows.map((r) => r.id as string)
  const applied = (await db.query('select event_id from billing.processed_events where event_id = any($1::uuid[])', [recorded])).rows.map((r) => r.event_id as string)
  const ledger = await db.query('select event_id, count(*)::int as n from billing.transactions where kind = \'usage\' group by event_id having count(*) > 1')
  t.ok(recorded.length > 20, `${recorded.length} usage events recorded by chat`)
  t.equal(new Set(applied).size, recorded.length, 'billing applied every one of them')
  t.same(ledger.rows, [], 'no event has two ledger rows')
  const stored = (await info(USAGE))!.state.messages
  t.ok(stored >= recorded.length, `the stream holds them all (${stored} messages for ${recorded.length} events)`)
  t.comment(`stream: ${stored} messages, ${stored - recorded.length} re-published duplicates JetStream kept`)
  await assertAuditPasses(t, system)
})
