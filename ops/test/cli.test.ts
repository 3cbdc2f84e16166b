// The `pnpm ops` dispatcher: each command reaches the service that owns it; unknown ones and usage mistakes print the usage (exit 2).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { ServiceCallError, UsageError } from '@chat-platform/platform'
import { typescriptArgs } from '@chat-platform/platform/testing'
import { failureMessage, runOps, type OpsContexts } from '../cli.ts'

const never: OpsContexts = {
  billing: () => { throw new Error('no billing context expected') },
  auth: () => { throw new Error('no auth context expected') }
}

t.test('commands go to their service; mistakes are usage errors before any connection', async (t) => {
  await t.rejects(runOps(['nope'], never), new UsageError('unknown command nope'))
  await t.rejects(runOps([], never), new UsageError('no command given'))
  await t.rejects(runOps(['billing:replay'], never), /give exactly one of --since or --from-seq/, 'billing parses its own arguments')
  await t.rejects(runOps(['billing:audit', '--bogus'], never), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' })
  await t.rejects(runOps(['admin:grant'], never), /admin:grant takes one email address/, 'auth parses its own')
  const reached: string[] = []
  const contexts: OpsContexts = {
    billing: () => { reached.push('billing'); throw new Error('stop here') },
    auth: () => { reached.push('auth'); throw new Error('stop here') }
  }
  await t.rejects(runOps(['billing:audit'], contexts), /stop here/)
  await t.rejects(runOps(['usage:reconcile', '--since', '2020-01-01T00:00:00Z'], contexts), /stop here/)
  await t.rejects(runOps(['payments:reconcile', '--since', '2020-01-01T00:00:00Z'], contexts), /stop here/)
  await t.rejects(runOps(['payments:reconcile'], never), /--since is required/)
  await t.rejects(runOps(['admin:revoke', 'a@example.com'], contexts), /stop here/)
  t.same(reached, ['billing', 'billing', 'billing', 'auth'])
})

t.test('failure messages: the usage of every service for a usage error, a failed call with its service and detail', async (t) => {
  const usage = failureMessage(new UsageError('unknown command nope'))
  for (const line of ['unknown command nope', 'pnpm ops billing:replay', 'pnpm ops billing:audit', 'pnpm ops usage:reconcile', 'pnpm ops payments:reconcile', 'pnpm ops admin:grant <email>', 'pnpm ops admin:revoke <email>']) {
    t.match(usage, line)
  }
  const call = new ServiceCallError({ service: 'chat (http://chat)', method: 'GET', path: '/internal/usage', status: 503, upstreamCode: 'service_unavailable', upstreamDetail: 'down' })
  t.equal(failureMessage(call), `ops failed: ${call.describe()}`)
})

t.test('the CLI: an unknown command exits 2 with the usage', async (t) => {
  const run = spawnSync(process.execPath, [...typescriptArgs(), 'ops/cli.ts', 'nope'], { cwd: new URL('../..', import.meta.url).pathname, env: { ...process.env, LOG_LEVEL: 'silent' }, encoding: 'utf8' })
  t.equal(run.status, 2)
  t.match(run.stderr, /^unknown command nope\nusage:\n {2}pnpm ops billing:replay/)
})
