// payments:reconcile settles what the callback missed (exactly once, through settleOrder), and billing:audit checks
// that paid orders and payment rows agree one to one.
import t from 'tap'
import { sql } from 'kysely'
import { buildPaymentsApp } from '../payments-helper.ts'
import { opsContext, runOps } from './helper.ts'

t.test('payments:reconcile settles orders WeChat Pay says are paid (also one closed here), once; --dry-run writes nothing', async (t) => {
  const { deps, env, fake, order, balance, payments, orderRow, audit } = await buildPaymentsApp(t)
  const since = new Date(Date.now() - 60_000).toISOString()
  const { order_no: missed } = (await order(1)).json()
  const { order_no: unpaid } = (await order(1)).json()
  const { order_no: closedHere } = (await order(2)).json()
  fake.markPaid(missed)
  fake.markPaid(closedHere)
  await sql`update orders set status = 'closed', closed_at = now() where order_no = ${closedHere}`.execute(deps.db)

  const dry = opsContext(env)
  t.equal(await runOps(['payments:reconcile', '--since', since, '--dry-run'], dry.make), 0)
  t.match(dry.lines[0], /3 asked about; would settle 2, .* \(dry run: nothing written\)/)
  t.match(dry.lines.join('\n'), new RegExp(`would settle ${missed}: user 1 \\+1000 tokens`))
  t.equal((await payments(1)).length + (await payments(2)).length, 0, 'dry run: nothing credited')

  const run = opsContext(env)
  t.equal(await runOps(['payments:reconcile', '--since', since], run.make), 0)
  t.match(run.lines[0], /3 asked about; settled 2, closed 0, already paid 0, mismatched \(flagged\) 0, query failed 0/)
  t.equal((await orderRow(missed)).status, 'paid')
  t.equal((await orderRow(unpaid)).status, 'pending')
  t.match(await orderRow(closedHere), { status: 'paid', flagged: true })
  t.equal(await balance(1), 2000)
  t.equal(await balance(2), 2000)

  const again = opsContext(env)
  t.equal(await runOps(['payments:reconcile', '--since', since], again.make), 0)
  t.match(again.lines[0], /1 asked about; settled 0/, 'paid orders are final: only the unpaid one is asked about')
  t.equal((await payments(1)).length, 1)
  t.same(await audit(), [])

  fake.knobs.query = { status: 500, code: 'SYSTEM_ERROR' }
  const failing = opsContext(env)
  t.equal(await runOps(['payments:reconcile', '--since', since], failing.make), 1, 'exit 1 when WeChat Pay could not be asked')
  t.match(failing.lines.join('\n'), new RegExp(`query failed ${unpaid}`))
})

t.test('payments:reconcile needs --since and a configured merchant', async (t) => {
  const { env } = await buildPaymentsApp(t, { merchant: false })
  const ops = opsContext(env)
  await t.rejects(runOps(['payments:reconcile'], ops.make), /--since is required/)
  await t.rejects(runOps(['payments:reconcile', '--since', 'yesterday'], ops.make), /--since must be an ISO 8601 time/)
  await t.rejects(runOps(['payments:reconcile', '--since', new Date().toISOString()], ops.make), /needs a WeChat Pay merchant/)
})

t.test('billing:audit: every paid order has exactly one payment row of its tokens, and every payment row a paid order', async (t) => {
  const { deps, env, fake, order, notify, audit } = await buildPaymentsApp(t)
  const { order_no: paid } = (await order(1)).json()
  const { order_no: pending } = (await order(1)).json()
  fake.markPaid(paid)
  await notify(fake.notification(paid))
  t.same(await audit(), [])
  const clean = opsContext(env)
  t.equal(await runOps(['billing:audit'], clean.make), 0)
  t.match(clean.lines.join('\n'), /ok {3}paid_order_credited_once/)
  t.match(clean.lines.join('\n'), /ok {3}payment_row_has_paid_order/)

  // A paid order without its credit, and a payment row whose order is not paid.
  await sql`update orders set status = 'paid', paid_at = now() where order_no = ${pending}`.execute(deps.db)
  await sql`update orders set status = 'closed', paid_at = null, closed_at = now() where order_no = ${paid}`.execute(deps.db)
  const breaks = await audit()
  t.match(breaks, [
    { check: 'paid_order_credited_once', user_id: 1, detail: new RegExp(`order ${pending} \\(1000 tokens\\) has 0 payment rows`) },
    { check: 'payment_row_has_paid_order', user_id: 1, detail: /an order that is closed/ }
  ])
  const ops = opsContext(env)
  t.equal(await runOps(['billing:audit'], ops.make), 1)
})
