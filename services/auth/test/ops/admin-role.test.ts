// admin:grant / admin:revoke change the role auth stores (emails normalized like registration); an unknown address exits non-zero.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { typescriptArgs } from '@chat-platform/platform/testing'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, bearer } from '../helper.ts'
import { decodeJwt } from '../jwt.ts'
import { createAuthOpsContext, runAuthOps, type AuthOpsContext } from '../../src/ops/index.ts'

/** An ops context over `env` with the output captured. */
function opsContext (env: Record<string, string>) {
  const lines: string[] = []
  const make = () => createAuthOpsContext({ ...env, LOG_LEVEL: 'silent' }, (l) => lines.push(l))
  return { lines, make }
}
const runOps = (argv: string[], make: () => AuthOpsContext) => runAuthOps(argv[0], argv.slice(1), make)

const roleOf = async (s: Awaited<ReturnType<typeof buildTestApp>>, email: string, password: string) =>
  decodeJwt(await s.tokenFor(email, password)).payload.role

t.test('grant then revoke: the next login\'s token follows the stored role', async (t) => {
  const s = await buildTestApp(t, { ADMIN_JWT_TTL: '900' })
  const boss = await s.register({ email: '  BOSS@Example.com ' })
  const env = { DATABASE_URL: s.config.DATABASE_URL, EVENTS_NAMESPACE: s.config.EVENTS_NAMESPACE }
  t.equal(await roleOf(s, 'boss@example.com', boss.password), undefined, 'registering the address gives nothing')

  const grant = opsContext(env)
  t.equal(await runOps(['admin:grant', ' Boss@EXAMPLE.com '], grant.make), 0, 'the address is normalized as registration does')
  t.match(grant.lines.join('\n'), new RegExp(`granted admin to user ${boss.user_id} \\(boss@example\\.com\\)`))
  const token = decodeJwt(await s.tokenFor('boss@example.com', boss.password)).payload
  t.equal(token.role, 'admin')
  t.ok((token.exp as number) <= (token.iat as number) + 900, 'exp ≤ iat + ADMIN_JWT_TTL')

  const again = opsContext(env)
  t.equal(await runOps(['admin:grant', 'boss@example.com'], again.make), 0)
  t.match(again.lines.join('\n'), /already an admin: nothing changed/)

  await s.seedBalance(boss.user_id, 1)
  const adminToken = await s.tokenFor('boss@example.com', boss.password)
  t.equal((await s.app.inject({ url: '/api/auth/verify', headers: bearer(adminToken) })).statusCode, 200)
  const revoke = opsContext(env)
  t.equal(await runOps(['admin:revoke', 'boss@example.com'], revoke.make), 0)
  t.match(revoke.lines.join('\n'), /revoked admin from user/)
  await waitFor(async () => (await s.app.inject({ url: '/api/auth/verify', headers: bearer(adminToken) })).statusCode === 401, { what: 'the admin token refused after admin:revoke' })
  t.equal(await roleOf(s, 'boss@example.com', boss.password), undefined, 'the next login carries no role')
})

t.test('an address nobody registered: exit 1, a clear message, nothing changed', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  for (const command of ['admin:grant', 'admin:revoke']) {
    const ops = opsContext({ DATABASE_URL: s.config.DATABASE_URL })
    t.equal(await runOps([command, 'Nobody@Example.com'], ops.make), 1, command)
    t.match(ops.lines.join('\n'), /no user is registered with email "nobody@example\.com"/)
  }
  const roles = await s.deps.db.selectFrom('users').select('role').execute()
  t.same(roles, [{ role: 'user' }])
  t.equal(await roleOf(s, u.email, u.password), undefined)
})

t.test('AUTH_DATABASE_URL, when set, is where the role is changed (auth\'s own role where each service has one)', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  const ops = opsContext({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/nothing', AUTH_DATABASE_URL: s.config.DATABASE_URL })
  t.equal(await runOps(['admin:grant', u.email], ops.make), 0)
  t.equal(await roleOf(s, u.email, u.password), 'admin')
})

t.test('usage errors: no email, two emails, an option', async (t) => {
  const never = () => { throw new Error('no context for a usage error') }
  for (const args of [['admin:grant'], ['admin:grant', 'a@example.com', 'b@example.com'], ['admin:revoke', '--all']]) {
    await t.rejects(runOps(args, never), { message: /takes one email address/ }, args.join(' '))
  }
})

t.test('through the CLI: exit 0 for a registered address, exit 1 with the message for an unknown one, exit 2 for a usage error', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  const run = (...args: string[]) => spawnSync(process.execPath, [...typescriptArgs(), 'ops/cli.ts', ...args], { cwd: new URL('../../../../', import.meta.url).pathname, env: { ...process.env, DATABASE_URL: s.config.DATABASE_URL, LOG_LEVEL: 'silent' }, encoding: 'utf8' })
  const ok = run('admin:grant', u.email)
  t.equal(ok.status, 0, ok.stderr)
  t.equal(await roleOf(s, u.email, u.password), 'admin')
  const unknown = run('admin:grant', 'ghost@example.com')
  t.equal(unknown.status, 1)
  t.match(unknown.stdout + unknown.stderr, /no user is registered with email "ghost@example\.com"/)
  const usage = run('admin:revoke')
  t.equal(usage.status, 2)
  t.match(usage.stderr, /admin:revoke takes one email address/)
})
