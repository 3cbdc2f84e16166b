// Admins through the real processes under RECHARGE_POLICY=admin: a self-registered address is never an admin; after
// `pnpm ops admin:grant` the next login recharges another user, after `admin:revoke` the next login cannot.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { withoutCoverage } from '@chat-platform/platform/testing'
import { startSystem, type System } from './support/system.ts'
import { assertAuditPasses, assertExactBalance, assertProblem, registerUser } from './support/client.ts'

t.setTimeout(180_000)

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const system = await startSystem(t, { procEnv: { billing: { RECHARGE_POLICY: 'admin' } } })

/** `pnpm ops <args>` against the system's database, as an operator runs it. */
async function ops (system: System, ...args: string[]): Promise<{ code: number | null, output: string }> {
  const child = spawn('pnpm', ['--silent', 'ops', ...args], { cwd: ROOT, env: withoutCoverage({ ...process.env, ...system.env }), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (b) => { output += b })
  child.stderr.on('data', (b) => { output += b })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, output }
}

const login = async (email: string, password: string) => {
  const res = await system.request('POST', '/api/auth/email-login', { body: { email, password } })
  t.equal(res.status, 200, `login ${email}`)
  return res.body.access_token as string
}
const claims = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
const balanceOf = async (token: string) => (await system.request('GET', '/api/user/balance', { token })).body.balance

t.test('only an operator-granted admin recharges another user, and only until revoked', async (t) => {
  const target = await registerUser(system, 'target')
  const password = 'boss-password-1'
  const reg = await system.request('POST', '/api/auth/register', { body: { email: '  BOSS@Example.com ', password, nickname: 'Boss' } })
  t.equal(reg.status, 200, 'anyone may register the address')

  const selfMade = await login('boss@example.com', password)
  t.notOk('role' in claims(selfMade), 'a self-registered address gets no role')
  assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: selfMade, body: { amount: 1_000_000, user_id: target.id } }), 403, 'forbidden', 'recharge another user without the role')
  assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: target.token, body: { amount: 5 } }), 403, 'forbidden', 'a user recharging themselves under the admin policy')

  const unknown = await ops(system, 'admin:grant', 'nobody@example.com')
  t.equal(unknown.code, 1, 'granting an address nobody registered fails')
  t.match(unknown.output, /no user is registered with email "nobody@example\.com"/)

  const grant = await ops(system, 'admin:grant', 'Boss@Example.com')
  t.equal(grant.code, 0, grant.output)
  assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: selfMade, body: { amount: 1_000_000, user_id: target.id } }), 403, 'forbidden', 'the token issued before the grant stays without the role')

  const admin = await login('boss@example.com', password)
  const c = claims(admin)
  t.equal(c.role, 'admin')
  t.ok(c.exp - c.iat <= 3600, `the admin token lives at most ADMIN_JWT_TTL (${c.exp - c.iat} s)`)
  const before = await balanceOf(target.token)
  const credited = await system.request('POST', '/api/billing/recharge', { token: admin, body: { amount: 2500, user_id: target.id } })
  t.equal(credited.status, 200, JSON.stringify(credited.body))
  target.recharged += 2500
  t.equal(await balanceOf(target.token), before + 2500, 'the target was credited')

  const revoke = await ops(system, 'admin:revoke', 'boss@example.com')
  t.equal(revoke.code, 0, revoke.output)
  const demoted = await login('boss@example.com', password)
  t.notOk('role' in claims(demoted), 'the next login carries no role')
  assertProblem(t, await system.request('POST', '/api/billing/recharge', { token: demoted, body: { amount: 1, user_id: target.id } }), 403, 'forbidden', 'after the revoke')

  await assertExactBalance(t, system, target)
  await assertAuditPasses(t, system)
})
