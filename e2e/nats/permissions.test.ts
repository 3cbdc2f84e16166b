// NATS users per service (DESIGN §6.1): a private nats-server 2.9 runs infra/nats/nats-2.9.conf with infra/nats/users.conf,
// the real processes connect as their own users, and each user can do its own work and nothing else.
import { spawn } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { Streams, Subjects } from '@chat-platform/contracts'
import { connectNats } from '@chat-platform/platform'
import { startPrivateNats, waitFor, withoutCoverage } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem } from '../support/system.ts'
import { assertAuditPasses, assertExactBalance, createSession, recharge, registerUser } from '../support/client.ts'

t.setTimeout(240_000)

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const NATS_DIR = `${ROOT}infra/nats/`
const USERS = ['auth', 'chat', 'billing', 'gateway', 'admin'] as const
// Starting with a letter, as generate-env.sh makes them: nats-server parses the variable's value (`3e5…` is a number).
const passwords = Object.fromEntries(USERS.map((u) => [u, `n${randomBytes(12).toString('hex')}`])) as Record<typeof USERS[number], string>

// The 2.9 server config as shipped, on loopback, a free port and a temp store; users.conf is copied beside it.
const shipped = readFileSync(`${NATS_DIR}nats-2.9.conf`, 'utf8')
const config = `host: 127.0.0.1\n${shipped}`
  .replace(/^port: 4222$/m, 'port: {{PORT}}')
  .replace(/^http_port: 8222$/m, '')
  .replace('store_dir: /data/jetstream', 'store_dir: "{{DIR}}/jetstream"')
t.not(config, `host: 127.0.0.1\n${shipped}`, 'the shipped config was adapted')
const nats = await startPrivateNats(t, {
  config,
  files: [`${NATS_DIR}users.conf`],
  keepOutput: true,
  env: { AUTH_NATS_PASSWORD: passwords.auth, CHAT_NATS_PASSWORD: passwords.chat, BILLING_NATS_PASSWORD: passwords.billing, GATEWAY_NATS_PASSWORD: passwords.gateway, NATS_ADMIN_PASSWORD: passwords.admin }
})
const urlFor = (user: typeof USERS[number]) => `nats://${user}:${passwords[user]}@127.0.0.1:${nats.port}`

const sim = await startSimulator({ chunkDelayMs: 1 })
t.teardown(() => sim.close())
const system = await startSystem(t, {
  // The shipped config names the production streams: no test namespace on this private server.
  natsUrl: urlFor('billing'),
  env: { EVENTS_NAMESPACE: '', OPENAI_BASE_URL: sim.url, OPENAI_API_KEY: 'sk-e2e' },
  procEnv: { auth: { NATS_URL: urlFor('auth') }, chat: { NATS_URL: urlFor('chat') }, billing: { NATS_URL: urlFor('billing') }, gateway: { NATS_URL: urlFor('gateway') } }
})

const admin = await connect({ servers: nats.url, user: 'admin', pass: passwords.admin })
t.teardown(() => admin.close())
const jsm = await jetstreamManager(admin)
const streamMessages = async (name: string) => (await jsm.streams.info(name)).state.messages

/** A client connected as `user` that records the permission violations the server reports to it. */
async function clientAs (user: 'auth' | 'chat' | 'billing' | 'gateway'): Promise<{ nc: NatsConnection, violations: string[] }> {
  const nc = await connectNats({ url: urlFor(user), name: `test-${user}` })
  t.teardown(() => nc.close())
  const violations: string[] = []
  ;(async () => {
    for await (const s of nc.status()) if (s.type === 'error') violations.push(String(s.error?.message ?? s.error))
  })().catch(() => {})
  return { nc, violations }
}

t.test('the system works end to end with every service on its own NATS user', async (t) => {
  const users = [await registerUser(system, 'perm-a'), await registerUser(system, 'perm-b')]
  for (const u of users) {
    const sid = await createSession(system, u, 'nats users')
    for (let i = 0; i < 3; i++) t.equal((await system.request('POST', `/api/sessions/${sid}/messages`, { token: u.token, body: { content: `hello ${i}` } })).status, 200, 'send')
    t.equal((await recharge(system, u, 50)).status, 200, 'recharge')
  }
  for (const u of users) await assertExactBalance(t, system, u)
  t.ok(await streamMessages(Streams.AUTH_EVENTS.name) >= 2, 'auth published its registrations to AUTH_EVENTS')
  t.equal(await streamMessages(Streams.CHAT_USAGE.name), 6, 'chat published one usage event per exchange')
  const consumers = (await jsm.consumers.list(Streams.CHAT_USAGE.name).next()).map((c) => c.name)
  t.ok(consumers.length > 0, `billing created its consumer (${consumers.join(', ')})`)
  await assertAuditPasses(t, system)

  // `pnpm ops` runs with billing's environment, hence its NATS user: billing:replay reads CHAT_USAGE through an ordered consumer.
  const child = spawn('pnpm', ['--silent', 'ops', 'billing:replay', '--from-seq', '1'], { cwd: ROOT, env: withoutCoverage({ ...process.env, ...system.env }), stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (b) => { out += b })
  child.stderr.on('data', (b) => { out += b })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, `billing:replay with billing's user exits 0:\n${out}`)
  t.match(out, /already applied\D*6/i, 'it read the six events, all already applied')
  t.notMatch(nats.output.join(''), /Permissions Violation/i, 'the server reported no permission violation while the system ran')
})

t.test("chat's user cannot publish to auth's subjects or read what it may not", async (t) => {
  const before = await streamMessages(Streams.AUTH_EVENTS.name)
  const { nc, violations } = await clientAs('chat')
  const forged = { event_id: randomUUID(), occurred_at: new Date().toISOString(), user_id: 999_001, via: 'email' }
  await t.rejects(jetstream(nc).publish(Subjects.userRegistered, JSON.stringify(forged), { msgID: forged.event_id, timeout: 1_500 }), 'a JetStream publish to auth.user.registered gets no ack')
  nc.publish(Subjects.userRegistered, JSON.stringify(forged))
  await nc.flush()
  await waitFor(() => violations.some((v) => /publish/i.test(v) && v.includes(Subjects.userRegistered)), { what: 'the publish violation' })
  t.equal(await streamMessages(Streams.AUTH_EVENTS.name), before, 'AUTH_EVENTS holds nothing more')

  // Nor read the events, nor another service's replies.
  nc.subscribe('auth.>')
  nc.subscribe('_INBOX.billing.>')
  await nc.flush()
  await waitFor(() => violations.some((v) => /subscription/i.test(v) && v.includes('auth.>')) && violations.some((v) => v.includes('_INBOX.billing.>')), { what: 'the subscription violations' })
  await t.rejects(jetstreamManager(nc).then((m) => m.consumers.add(Streams.CHAT_USAGE.name, { name: 'snoop' })), 'chat cannot create a consumer on its own stream')
  await t.rejects(jetstreamManager(nc).then((m) => m.streams.delete(Streams.CHAT_USAGE.name)), 'chat cannot delete its stream')
  t.ok(await streamMessages(Streams.CHAT_USAGE.name) > 0, 'CHAT_USAGE is still there')

  // Billing consumes, it publishes no usage.
  const billing = await clientAs('billing')
  billing.nc.publish(Subjects.usageRecorded, '{}')
  await billing.nc.flush()
  await waitFor(() => billing.violations.some((v) => v.includes(Subjects.usageRecorded)), { what: "billing's publish violation" })
  // The gateway only reads revoked tokens: it publishes no event and reads no other stream.
  const gateway = await clientAs('gateway')
  gateway.nc.publish(Subjects.userRegistered, '{}')
  await gateway.nc.flush()
  await waitFor(() => gateway.violations.some((v) => v.includes(Subjects.userRegistered)), { what: "the gateway's publish violation" })
  await t.rejects(jetstreamManager(gateway.nc).then((m) => m.streams.info(Streams.CHAT_USAGE.name)), 'the gateway cannot read CHAT_USAGE')
  // A user registered through the gateway afterwards is still credited: the services were not disturbed.
  const u = await registerUser(system, 'perm-after')
  await assertExactBalance(t, system, u, { usage: 0 })
})

t.test('a client without a user, or with a wrong password, cannot connect', async (t) => {
  await t.rejects(connect({ servers: nats.url, timeout: 3_000 }), /authorization/i, 'no user')
  await t.rejects(connect({ servers: nats.url, user: 'chat', pass: 'wrong', timeout: 3_000 }), /authorization/i, 'wrong password')
  await t.rejects(connect({ servers: nats.url, user: 'chat', pass: passwords.auth, timeout: 3_000 }), /authorization/i, "another user's password")
})
