// Scale-out correctness with real processes (issue #6): replicas booting together against an empty database,
// two billing processes sharing the usage consumer (one of them killed mid-way), two chat processes relaying
// one outbox, and two gateways sharing rate limits through Redis. One system serves every step, in order.
import { spawn } from 'node:child_process'
import { randomInt, randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import pg from 'pg'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { namespaced, Subjects, type UsageRecorded } from '@chat-platform/contracts'
import { billingInternal } from '@chat-platform/platform'
import { signTestToken, waitFor, withoutCoverage } from '@chat-platform/platform/testing'
import { migrations as authMigrations } from '@chat-platform/auth/db/migrations/index.ts'
import { migrations as chatMigrations } from '@chat-platform/chat/db/migrations/index.ts'
import { migrations as billingMigrations } from '@chat-platform/billing/db/migrations/index.ts'
import { startSimulator, type Simulator } from '@chat-platform/llm-simulator'
import { startSystem, type Proc, type System } from '../support/system.ts'

// Eleven processes boot at once; on two busy cores that alone can take a minute or more.
t.setTimeout(420_000)

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BONUS = 5000
const RATE_LIMIT = 20
const USAGE_CONSUMER = 'billing-usage'
const SCHEMAS = { auth: authMigrations, chat: chatMigrations, billing: billingMigrations }
const SERVICES = Object.keys(SCHEMAS) as (keyof typeof SCHEMAS)[]

const label = (p: Proc) => `${p.name}#${p.replica ?? 0}`
/** The instances of a process that are running (the first test stops some replicas for good). */
const live = (name: 'auth' | 'chat' | 'billing' | 'gateway') => system.instances(name).filter((p) => p.child && p.child.exitCode === null && p.child.signalCode === null)
/** DESIGN §3 with the prices configured below: sim-a costs 0.5 per prompt token and 1.5 per completion token, others 1 and 1. */
const price = (e: Pick<UsageRecorded, 'model' | 'prompt_tokens' | 'completion_tokens'>) =>
  e.model === 'sim-a' ? Math.ceil((e.prompt_tokens + 3 * e.completion_tokens) / 2) : e.prompt_tokens + e.completion_tokens

let system: System
let sim: Simulator
let db: pg.Client
let nc: NatsConnection
let js: JetStreamClient
let jsm: JetStreamManager
let stream: string
let subject: string

/** Runs a command to completion (bounded), with the system's environment. */
function run (cmd: string, args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: withoutCoverage({ ...process.env, ...env }), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b) => { stdout += b })
    child.stderr.on('data', (b) => { stderr += b })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', reject)
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

const ops = (...args: string[]) => run('pnpm', ['--silent', 'ops', ...args], system.env)

/** This process's billing_consumer_events_total counts for the usage consumer. */
async function consumerStats (p: Proc): Promise<Record<string, number>> {
  const text = await (await fetch(`${p.url}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^billing_consumer_events_total\{([^}]*)\} (\d+)$/gm)) {
    if (!m[1].includes('consumer="usage"')) continue
    const outcome = /outcome="([a-z_]+)"/.exec(m[1])?.[1]
    if (outcome) out[outcome] = Number(m[2])
  }
  return out
}

async function streamMessages (): Promise<number> {
  return (await jsm.streams.info(stream)).state.messages
}

async function consumerIdle (): Promise<boolean> {
  const info = await jsm.consumers.info(stream, USAGE_CONSUMER)
  return info.num_pending === 0 && info.num_ack_pending === 0
}

t.before(async () => {
  sim = await startSimulator()
  t.teardown(() => sim.close())
  system = await startSystem(t, {
    procs: ['auth', 'chat', 'billing', 'gateway'],
    replicas: { auth: 2, chat: 2, billing: 2, gateway: 1 },
    startTimeoutMs: 240_000,
    env: {
      // info: each process logs the migrations it applied itself, which the first test counts.
      LOG_LEVEL: 'info',
      SIGNUP_BONUS: String(BONUS),
      MODEL_PRICES: JSON.stringify({ 'sim-a': { input: 0.5, output: 1.5 } }),
      // Short, so that what a killed billing process held is redelivered within the test.
      BILLING_ACK_WAIT_MS: '3000',
      BILLING_BATCH_SIZE: '25',
      // These steps are about replicas, with thousands of synthetic user ids that auth never saw; the
      // "accounts only for users auth knows" rule is tested end to end in e2e/abuse.test.ts.
      BILLING_CHECK_USERS: 'false',
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: sim.url
    },
    procEnv: { gateway: { RATE_LIMIT_MAX: String(RATE_LIMIT) } }
  })
  db = new pg.Client({ connectionString: system.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  nc = await connect({ servers: system.env.NATS_URL })
  t.teardown(() => nc.close())
  js = jetstream(nc)
  jsm = await jetstreamManager(nc)
  const ns = namespaced(system.env.EVENTS_NAMESPACE)
  stream = ns.streams.CHAT_USAGE.name
  subject = ns.subject(Subjects.usageRecorded)
})

t.test('migrations race safely: three replicas of each service started at once on an empty database', async (t) => {
  for (const name of SERVICES) {
    t.equal(system.instances(name).length, 3, `three ${name} processes`)
    for (const p of system.instances(name)) {
      const res = await fetch(`${p.url}/readyz`)
      t.equal(res.status, 200, `${label(p)} is ready: ${await res.text()}`)
    }

    const expected = Object.keys(SCHEMAS[name]).sort()
    const { rows } = await db.query(`select name from ${name}.kysely_migration order by name`)
    t.same(rows.map((r) => r.name), expected, `${name}.kysely_migration has each migration once`)
    const lock = await db.query(`select is_locked from ${name}.kysely_migration_lock`)
    t.same(lock.rows, [{ is_locked: 0 }], `${name}: one migration lock row, released`)

    const applied: string[] = []
    for (const p of system.instances(name)) {
      for (const line of p.output.join('').split('\n')) {
        if (!line.includes('"migration applied"')) continue
        const entry = JSON.parse(line) as { schema: string, migration: string }
        if (entry.schema === name) applied.push(entry.migration)
      }
    }
    t.same(applied.sort(), expected, `${name}: each migration was applied by exactly one of the three replicas`)
  }

  // Every replica works against the schemas the others may have migrated.
  for (const [i, p] of system.instances('auth').entries()) {
    const res = await fetch(`${p.url}/api/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: `replica${i}@example.com`, password: 'correct horse battery', nickname: `replica ${i}` })
    })
    t.equal(res.status, 200, `${label(p)} registers a user`)
  }
  for (const [i, p] of system.instances('chat').entries()) {
    const res = await fetch(`${p.url}/api/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${signTestToken(600_001 + i)}` },
      body: JSON.stringify({ title: `replica ${i}` })
    })
    t.equal(res.status, 200, `${label(p)} creates a session`)
  }
  for (const [i, p] of system.instances('billing').entries()) {
    const balance = await billingInternal(p.url, { token: system.env.INTERNAL_TOKEN }).balance(600_101 + i)
    t.same(balance, { user_id: 600_101 + i, balance: BONUS, chat_applied: 0 }, `${label(p)} opens an account`)
  }

  // From here on: two chat and two billing processes (the third ones drain and exit cleanly), one auth.
  for (const p of [...system.replicas.get('auth')!, system.replicas.get('chat')![1], system.replicas.get('billing')![1]]) {
    t.equal(await system.stopProc(p), 0, `${label(p)} stops cleanly on SIGTERM`)
  }
  t.same(SERVICES.map((name) => live(name).length), [1, 2, 2], 'one auth, two chat, two billing processes left')
})

t.test('two billing processes consume at once, one killed mid-way: every usage event applies exactly once', async (t) => {
  const [billingA, billingB] = live('billing')
  const users = Array.from({ length: 50 }, (_, i) => 900_001 + i)
  const events: UsageRecorded[] = Array.from({ length: 2000 }, (_, i) => ({
    event_id: randomUUID(),
    occurred_at: new Date().toISOString(),
    user_id: users[i % users.length],
    session_id: 1 + (i % 7),
    message_id: i + 1,
    model: i % 3 === 0 ? 'sim-a' : 'gpt-4o-mini',
    prompt_tokens: randomInt(1, 400),
    completion_tokens: randomInt(1, 300),
    usage_source: i % 5 === 0 ? 'estimated' : 'provider'
  }))
  const publish = (e: UsageRecorded, msgID?: string) => js.publish(subject, JSON.stringify(e), msgID ? { msgID } : {})
  const publishAll = async (list: UsageRecorded[]) => {
    for (let i = 0; i < list.length; i += 100) await Promise.all(list.slice(i, i + 100).map((e) => publish(e, e.event_id)))
  }
  const applied = async () => (await db.query('select count(*)::int as n from billing.processed_events where subject = $1 and user_id between 900001 and 900050', [Subjects.usageRecorded])).rows[0].n as number

  const before = await streamMessages()
  // Published in the background while B is killed: the survivor keeps consuming, B's unacked messages come back.
  const firstPart = publishAll(events.slice(0, 1400))
  await waitFor(async () => (await consumerStats(billingA)).applied > 0 && (await consumerStats(billingB)).applied > 0, { timeoutMs: 60_000, what: 'both billing processes applying events' })
  t.equal(await system.stopProc(billingB, 'SIGKILL'), null, 'billing#1 killed (SIGKILL)')
  t.comment(`killed with ${await applied()} of ${events.length} events applied`)
  await firstPart
  await publishAll(events.slice(1400, 1700))
  await system.startProc(billingB)

  // Duplicates (same Nats-Msg-Id: JetStream drops them), replays (same event, new message id: JetStream keeps
  // them, billing must not), and a concurrent `billing:replay` of the whole stream racing both consumers.
  const duplicates = Array.from({ length: 150 }, () => events[randomInt(0, 1700)])
  // Distinct events: replaying one twice under the same new id would itself be a same-id duplicate.
  const replays = events.slice(0, 1700).sort(() => Math.random() - 0.5).slice(0, 150)
  const unnamed = Array.from({ length: 20 }, () => events[randomInt(0, 1700)])
  const replay = ops('billing:replay', '--from-seq', String(before + 1))
  const acks = await Promise.all([
    ...events.slice(1700).map((e) => publish(e, e.event_id)),
    ...duplicates.map((e) => publish(e, e.event_id)),
    ...replays.map((e) => publish(e, `${e.event_id}:replayed`)),
    ...unnamed.map((e) => publish(e))
  ])
  t.equal(acks.filter((a) => a.duplicate).length, duplicates.length, 'JetStream dropped the same-id duplicates')
  const replayed = await replay
  t.equal(replayed.code, 0, `billing:replay ran: ${replayed.stdout}${replayed.stderr}`)
  const counts = /applied (\d+), already applied (\d+), rejected (\d+) \(read (\d+) events/.exec(replayed.stdout)
  t.ok(counts, 'billing:replay printed its counts')
  if (counts) {
    t.equal(Number(counts[3]), 0, 'replay rejected nothing')
    t.equal(Number(counts[1]) + Number(counts[2]), Number(counts[4]), 'replay: every event read was applied or found applied')
  }

  await waitFor(async () => await applied() === events.length && await consumerIdle(), { timeoutMs: 120_000, intervalMs: 250, what: 'all usage events applied and acked' })
  t.equal(await streamMessages() - before, events.length + replays.length + unnamed.length, 'the stream held every event plus the replays')

  const processed = await db.query('select event_id from billing.processed_events where user_id between 900001 and 900050')
  t.same(new Set(processed.rows.map((r) => r.event_id)), new Set(events.map((e) => e.event_id)), 'processed_events: each event once')
  const rows = await db.query('select event_id, user_id::int as user_id, change_amount::int as change_amount from billing.transactions where kind = \'usage\' and user_id between 900001 and 900050')
  t.equal(rows.rowCount, events.length, 'one usage ledger row per distinct event')
  const byId = new Map(events.map((e) => [e.event_id, e]))
  const wrong = rows.rows.filter((r) => byId.get(r.event_id)?.user_id !== r.user_id || r.change_amount !== -price(byId.get(r.event_id)!))
  t.same(wrong, [], 'every ledger row charges its own event\'s price to its user')

  const expected = new Map(users.map((u) => [u, BONUS]))
  for (const e of events) expected.set(e.user_id, expected.get(e.user_id)! - price(e))
  const accounts = await db.query(`select a.user_id::int as user_id, a.balance::int as balance, (select sum(change_amount)::int from billing.transactions x where x.user_id = a.user_id) as ledger_sum
    from billing.accounts a where a.user_id between 900001 and 900050 order by a.user_id`)
  t.same(accounts.rows.map((r) => [r.user_id, r.balance, r.ledger_sum]), users.map((u) => [u, expected.get(u), expected.get(u)]), 'each of the 50 balances is exact and equals its ledger')
  const dead = await db.query('select count(*)::int as n from billing.dead_letters')
  t.equal(dead.rows[0].n, 0, 'nothing set aside')

  const audit = await ops('billing:audit')
  t.equal(audit.code, 0, `pnpm ops billing:audit passes:\n${audit.stdout}${audit.stderr}`)
  t.match(audit.stdout, /ledger ok/)
})

t.test('two chat processes relay one outbox at once: every usage event is published once and billed once', async (t) => {
  const chats = live('chat')
  // A plain subscriber sees every publish that reaches NATS, including any JetStream would de-duplicate.
  const seen = new Map<string, number>()
  const sub = nc.subscribe(subject)
  const listening = (async () => {
    for await (const m of sub) {
      const id = (m.json() as { event_id: string }).event_id
      seen.set(id, (seen.get(id) ?? 0) + 1)
    }
  })()
  await nc.flush()
  const streamBefore = await streamMessages()
  const llmBefore = sim.requests.length

  const users = Array.from({ length: 16 }, (_, i) => 800_001 + i)
  const PER_USER = 8
  const statuses: number[] = []
  await Promise.all(users.map(async (user, u) => {
    const auth = { authorization: `Bearer ${signTestToken(user)}`, 'content-type': 'application/json' }
    const session = await (await fetch(`${chats[u % 2].url}/api/sessions`, { method: 'POST', headers: auth, body: JSON.stringify({ title: 'scale-out' }) })).json() as { id: number }
    for (let k = 0; k < PER_USER; k++) {
      // Alternate replicas per message, so each session's exchanges are split between the two processes.
      const res = await fetch(`${chats[(u + k) % 2].url}/api/sessions/${session.id}/messages`, { method: 'POST', headers: auth, body: JSON.stringify({ content: `message ${k} from ${user}` }) })
      statuses.push(res.status)
      await res.arrayBuffer()
    }
  }))
  const exchanges = users.length * PER_USER
  t.same(statuses.filter((s) => s !== 200), [], `all ${exchanges} exchanges answered 200`)
  t.equal(sim.requests.length - llmBefore, exchanges, 'one LLM call per exchange')

  await waitFor(async () => (await db.query('select count(*)::int as n from chat.outbox where subject = $1 and published_at is null', [subject])).rows[0].n === 0, { timeoutMs: 60_000, what: 'the outbox relayed' })
  const outbox = await db.query('select id, stream_seq::int as stream_seq from chat.outbox where subject = $1', [subject])
  const usage = await db.query('select event_id from chat.usage where user_id between 800001 and 800016')
  t.equal(outbox.rowCount, exchanges, 'one outbox row per exchange')
  t.same(new Set(usage.rows.map((r) => r.event_id)), new Set(outbox.rows.map((r) => r.id)), 'the outbox rows are the recorded usage')

  await waitFor(() => outbox.rows.every((r) => seen.has(r.id)), { timeoutMs: 30_000, what: 'every event seen on NATS' })
  await nc.flush()
  sub.unsubscribe()
  await listening
  t.same([...seen].filter(([, n]) => n !== 1), [], 'each event was published exactly once (no double publish hidden by JetStream de-duplication)')
  t.equal(seen.size, exchanges, 'and nothing else was published')
  t.equal(await streamMessages() - streamBefore, exchanges, 'the stream grew by one message per exchange')
  t.equal(new Set(outbox.rows.map((r) => r.stream_seq)).size, exchanges, 'distinct stream sequences')
  const mismatched: string[] = []
  for (const r of outbox.rows) {
    const m = await jsm.streams.getMessage(stream, { seq: r.stream_seq })
    if ((m?.json() as { event_id?: string } | undefined)?.event_id !== r.id) mismatched.push(r.id)
  }
  t.same(mismatched, [], 'each outbox row\'s stream_seq holds that event')

  await waitFor(async () => (await db.query('select count(*)::int as n from billing.processed_events where event_id = any($1::uuid[])', [outbox.rows.map((r) => r.id)])).rows[0].n === exchanges && await consumerIdle(), { timeoutMs: 60_000, what: 'billing applied the exchanges' })
  const charged = await db.query('select event_id, count(*)::int as n from billing.transactions where kind = \'usage\' and event_id = any($1::uuid[]) group by event_id', [outbox.rows.map((r) => r.id)])
  t.equal(charged.rowCount, exchanges, 'every exchange charged')
  t.same(charged.rows.filter((r) => r.n !== 1), [], 'and charged once')
  // DESIGN §3: with ratios 1, the tokens on a user's messages add up to what billing charged them.
  const totals = await db.query(`select m.user_id::int as user_id, sum(m.tokens)::int as tokens, a.balance::int as balance from chat.messages m join billing.accounts a on a.user_id = m.user_id
    where m.user_id between 800001 and 800016 group by m.user_id, a.balance order by m.user_id`)
  t.same(totals.rows.map((r) => [r.user_id, r.balance]), users.map((u, i) => [u, BONUS - totals.rows[i]?.tokens]), 'each balance is the bonus minus the tokens of the user\'s messages')
})

t.test('two chat processes share the per-user in-flight limit through Redis', async (t) => {
  const chats = live('chat')
  const headers = { authorization: `Bearer ${signTestToken(800_101)}`, 'content-type': 'application/json' }
  const sessions: number[] = []
  for (const c of chats) {
    const res = await fetch(`${c.url}/api/sessions`, { method: 'POST', headers, body: JSON.stringify({ title: 'in flight' }) })
    sessions.push((await res.json() as { id: number }).id)
  }
  const send = async (i: number) => {
    const res = await fetch(`${chats[i].url}/api/sessions/${sessions[i]}/messages`, { method: 'POST', headers, body: JSON.stringify({ content: `held ${i}` }) })
    return { status: res.status, body: await res.json() as { code?: string } }
  }
  let release!: () => void
  sim.knobs.hold = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => { release(); sim.knobs.hold = undefined })
  const before = sim.requests.length
  // CHAT_MAX_INFLIGHT is 2: one exchange held in the LLM on each replica fills the user's slots.
  const held = [send(0), send(1)]
  await waitFor(() => sim.requests.length - before === 2, { timeoutMs: 30_000, what: 'two exchanges in flight' })
  for (const i of [0, 1]) {
    const r = await send(i)
    t.same([r.status, r.body.code], [429, 'rate_limited'], `a third exchange on chat#${i} is refused`)
  }
  release()
  t.same((await Promise.all(held)).map((r) => r.status), [200, 200], 'the held exchanges complete')
  sim.knobs.hold = undefined
  t.equal((await send(1)).status, 200, 'and the slots are free again')
})

t.test('two gateways share one rate limit through Redis', async (t) => {
  const gateways = live('gateway')
  t.equal(gateways.length, 2, 'two gateways')
  const token = signTestToken(700_001)
  const results: { status: number, remaining: string | null, retryAfter: string | null, code?: string }[] = []
  for (let i = 0; i < RATE_LIMIT + 6; i++) {
    const res = await fetch(`${gateways[i % 2].url}/api/user/balance`, { headers: { authorization: `Bearer ${token}` } })
    const body = await res.json() as { code?: string }
    results.push({ status: res.status, remaining: res.headers.get('ratelimit-remaining'), retryAfter: res.headers.get('retry-after'), code: body.code })
  }
  t.same(results.map((r) => r.status), [...Array(RATE_LIMIT).fill(200), ...Array(6).fill(429)], `${RATE_LIMIT} requests pass across both gateways, then 429 from either`)
  // Below half the limit each gateway counts locally and syncs every RATE_LIMIT_SYNC_MS, so RateLimit-Remaining
  // may say more is left than there is (never less); the 429s above are exact all the same.
  const remaining = results.slice(0, RATE_LIMIT).map((r) => Number(r.remaining))
  t.ok(remaining.every((left, i) => Number.isInteger(left) && left >= RATE_LIMIT - 1 - i && left < RATE_LIMIT), `remaining is never below what is truly left: ${remaining.join(',')}`)
  t.ok(results.slice(RATE_LIMIT).every((r) => r.code === 'rate_limited' && Number(r.retryAfter) > 0), '429s are rate_limited problems with Retry-After')

  const other = signTestToken(700_002)
  for (const g of gateways) {
    const res = await fetch(`${g.url}/api/user/balance`, { headers: { authorization: `Bearer ${other}` } })
    t.equal(res.status, 200, `another user still passes at gateway#${g.replica ?? 0}`)
    await res.arrayBuffer()
  }
})
