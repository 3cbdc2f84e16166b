// `pnpm ops billing:audit`: checks the ledger invariants against the database; exit 1 on any break.
import { auditLedger } from '../audit.ts'
import type { BillingOpsContext } from './context.ts'

export async function billingAudit (ctx: BillingOpsContext): Promise<number> {
  const report = await auditLedger(ctx.db())
  for (const c of report.checks) ctx.out(`${c.breaks === 0 ? 'ok  ' : 'FAIL'} ${c.name}: ${c.description}${c.breaks ? ` (${c.breaks} breaks)` : ''}`)
  for (const b of report.breaks) ctx.out(`  break ${b.check} user ${b.user_id ?? '-'}: ${b.detail}`)
  ctx.out(report.breaks.length === 0 ? 'ledger ok' : `${report.breaks.length} breaks found`)
  return report.breaks.length === 0 ? 0 : 1
}
