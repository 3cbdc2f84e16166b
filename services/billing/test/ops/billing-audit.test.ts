// billing:audit passes on a clean ledger and lists every planted break with exit code 1 (also through the CLI).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { sql } from 'kysely'
import { testEnv, testDeps, usageEvent } from '../helper.ts'
import type { Teardown } from '../helper.ts'
import { applyUsageEvents, creditRecharge } from '../../src/ledger.ts'
import { typescriptArgs } from '@chat-platform/platform/testing'
import { opsContext, runOps, ROOT } from './helper.ts'

async function ledger (t: Teardown) {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  await deps.db.transaction().execute(async (trx) => {
    await creditRecharge(trx, 1, 500, 'recharge:a', deps.rules)
    await applyUsageEvents(trx, [usageEvent(1), usageEvent(2, { prompt_tokens: 40 }), usageEvent(1, { prompt_tokens: 0, completion_tokens: 0 })], deps.rules)
    await creditRecharge(trx, 2, 7, 'recharge:b', deps.rules)
  })
  return { env, deps }
}

t.test('a clean ledger passes every check', async (t) => {
  const { env } = await ledger(t)
  const ops = opsContext(env)
  t.equal(await runOps(['billing:audit'], ops.make), 0)
  t.ok(ops.lines.length >= 8)
  t.ok(ops.lines.slice(0, -1).every((l) => l.startsWith('ok ')), ops.lines.join('\n'))
  t.equal(ops.lines.at(-1), 'ledger ok')
})

t.test('each planted break is found and named, exit 1', async (t) => {
  const { env, deps } = await ledger(t)
  await sql`update accounts set balance = balance + 1 where user_id = 2`.execute(deps.db)
  await sql`update transactions set balance_after = balance_after - 3 where id = (select min(id) from transactions where user_id = 1 and kind = 'recharge')`.execute(deps.db)
  await sql`update transactions set change_amount = change_amount - 1 where user_id = 2 and kind = 'usage'`.execute(deps.db)
  const ops = opsContext(env)
  t.equal(await runOps(['billing:audit'], ops.make), 1)
  const out = ops.lines.join('\n')
  t.match(out, /FAIL balance_equals_ledger_sum/)
  t.match(out, /break balance_equals_ledger_sum user 2: balance/)
  t.match(out, /break balance_after_chains user 1: row \d+/)
  t.match(out, /break usage_event_charged_once user 2/)
  t.match(out, /break usage_priced_from_provenance user 2/)
  t.match(out, /breaks found$/)
})

t.test('a usage row whose event is not recorded as applied is a break', async (t) => {
  const { env, deps } = await ledger(t)
  await sql`delete from processed_events where user_id = 2`.execute(deps.db)
  const ops = opsContext(env)
  t.equal(await runOps(['billing:audit'], ops.make), 1)
  t.match(ops.lines.join('\n'), /break usage_row_has_event user 2/)
})

t.test('pnpm ops billing:audit exits 1 on a break and 0 on a clean ledger', async (t) => {
  const { env, deps } = await ledger(t)
  const run = () => spawnSync(process.execPath, [...typescriptArgs(), 'ops/cli.ts', 'billing:audit'], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' })
  const clean = run()
  t.equal(clean.status, 0, clean.stderr)
  t.match(clean.stdout, /ledger ok/)
  await sql`update accounts set balance = balance - 5 where user_id = 1`.execute(deps.db)
  const broken = run()
  t.equal(broken.status, 1)
  t.match(broken.stdout, /break balance_equals_ledger_sum user 1/)
})
