// Admin routes through the real processes: a normal token is refused at the gateway and again by the services; an
// operator-granted admin makes redemption codes, adjusts, searches users and reads transactions and usage; a user
// redeems a code once however many times it is sent at once; balances exact and billing:audit clean.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { withoutCoverage } from '@chat-platform/platform/testing'
import { startSystem } from './support/system.ts'
import { assertAuditPasses, assertExactBalance, assertProblem, registerUser } from './support/client.ts'

t.setTimeout(180_000)

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const system = await startSystem(t)

async function grantAdmin (email: string): Promise<void> {
  const child = spawn('pnpm', ['--silent', 'ops', 'admin:grant', email], { cwd: ROOT, env: withoutCoverage({ ...process.env, ...system.env }), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (b) => { output += b })
  child.stderr.on('data', (b) => { output += b })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  if (code !== 0) throw new Error(`admin:grant failed: ${output}`)
}

const ADMIN_ROUTES: { method: string, path: (id: number) => string, body?: unknown }[] = [
  { method: 'GET', path: () => '/api/admin/users?query=e2e' },
  { method: 'GET', path: (id) => `/api/admin/users/${id}/transactions` },
  { method: 'POST', path: () => '/api/admin/adjustments', body: { user_id: 1, amount: 1_000_000, reason: 'mine' } },
  { method: 'POST', path: () => '/api/admin/redemption-codes', body: { tokens: 1_000_000, count: 1 } },
  { method: 'GET', path: () => '/api/admin/usage' },
  { method: 'GET', path: () => '/api/admin/orders' }
]

t.test('a normal token: 403 on every admin route at the gateway and at the owning service; nothing changes', async (t) => {
  const user = await registerUser(system, 'plain')
  for (const r of ADMIN_ROUTES) {
    const what = `${r.method} ${r.path(user.id)}`
    assertProblem(t, await system.request(r.method, r.path(user.id), { token: user.token, body: r.body }), 403, 'forbidden', `${what} at the gateway`)
    // Straight to the service, as a request that got past the edge would: refused again.
    const owner = r.path(user.id).startsWith('/api/admin/users?') ? 'auth' : 'billing'
    assertProblem(t, await system.request(r.method, r.path(user.id), { token: user.token, body: r.body, to: owner }), 403, 'forbidden', `${what} at ${owner}`)
    t.equal((await system.request(r.method, r.path(user.id), { body: r.body })).status, 401, `${what} without a token`)
  }
  await assertExactBalance(t, system, user)
})

t.test('an admin makes codes, a user redeems one (20 at once: one credit), the admin adjusts and reads', async (t) => {
  const boss = await registerUser(system, 'boss')
  await grantAdmin(boss.email)
  const login = await system.request('POST', '/api/auth/email-login', { body: { email: boss.email, password: boss.password } })
  const admin = login.body.access_token as string
  const user = await registerUser(system, 'redeemer')
  const other = await registerUser(system, 'other')

  const made = await system.request('POST', '/api/admin/redemption-codes', { token: admin, body: { tokens: 321, count: 3, note: 'e2e' } })
  t.equal(made.status, 200, JSON.stringify(made.body))
  const codes = made.body.codes as string[]
  t.equal(codes.length, 3)

  const race = await Promise.all([user, other].flatMap((u) => Array.from({ length: 10 }, () => system.request('POST', '/api/billing/redeem', { token: u.token, body: { code: codes[0] } }))))
  const won = race.filter((r) => r.status === 200)
  t.equal(won.length, 1, 'one credit')
  t.ok(race.filter((r) => r.status !== 200).every((r) => r.status === 409 && r.body.code === 'redemption_used'), 'the rest: 409 redemption_used')
  const winner = race.indexOf(won[0]) < 10 ? user : other
  winner.recharged += 321
  t.same(won[0].body, { message: '兑换成功', balance: 1321, tokens: 321 })

  const second = await system.request('POST', '/api/billing/redeem', { token: user.token, body: { code: codes[1].toLowerCase().replaceAll('-', '') } })
  t.equal(second.status, 200)
  user.recharged += 321
  assertProblem(t, await system.request('POST', '/api/billing/redeem', { token: user.token, body: { code: 'AAAAA-AAAAA-AAAAA-AAAAA' } }), 404, 'not_found', 'a wrong code')

  const adjusted = await system.request('POST', '/api/admin/adjustments', { token: admin, headers: { 'idempotency-key': 'e2e-adj' }, body: { user_id: user.id, amount: -21, reason: 'e2e correction' } })
  t.equal(adjusted.status, 200, JSON.stringify(adjusted.body))
  t.match(adjusted.body, { user_id: user.id, change_amount: -21, kind: 'adjustment', admin_id: boss.id, reason: 'e2e correction' })
  const replay = await system.request('POST', '/api/admin/adjustments', { token: admin, headers: { 'idempotency-key': 'e2e-adj' }, body: { user_id: user.id, amount: -21, reason: 'e2e correction' } })
  t.same(replay.body, adjusted.body, 'replayed, not applied twice')
  assertProblem(t, await system.request('POST', '/api/admin/adjustments', { token: admin, body: { user_id: 987_654_321, amount: 5, reason: 'nobody' } }), 404, 'not_found', 'a user auth does not know')

  const found = await system.request('GET', `/api/admin/users?query=${encodeURIComponent(user.email.slice(0, 14))}`, { token: admin })
  t.equal(found.status, 200)
  t.match(found.body, [{ id: user.id, email: user.email, role: 'user' }])
  const rows = await system.request('GET', `/api/admin/users/${user.id}/transactions`, { token: admin })
  t.equal(rows.status, 200)
  t.same(rows.body.map((r: { kind: string }) => r.kind).slice(0, 2), ['adjustment', 'redemption'])
  const usage = await system.request('GET', '/api/admin/usage?group_by=model', { token: admin })
  t.equal(usage.status, 200)
  t.ok(Array.isArray(usage.body))
  const mine = await system.request('GET', '/api/billing/usage', { token: user.token })
  t.same(mine.body, [], 'no chat yet: an empty report')

  // The negative adjustment counts as money out (the helper sums every negative row as usage; no chat happened).
  await assertExactBalance(t, system, user, { usage: 21 })
  await assertExactBalance(t, system, other)
  await assertAuditPasses(t, system)
})
