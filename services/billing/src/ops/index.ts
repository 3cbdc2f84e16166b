// Billing's ops commands (`pnpm ops billing:replay | billing:audit | usage:reconcile | payments:reconcile`): the package's `./ops` entry point.
import { parseArgs } from 'node:util'
import { UsageError } from '@chat-platform/platform'
import { createBillingOpsContext, type BillingOpsContext } from './context.ts'
import { billingAudit } from './billing-audit.ts'
import { billingReplay } from './billing-replay.ts'
import { DEFAULT_GRACE_SECONDS, usageReconcile } from './usage-reconcile.ts'
import { paymentsReconcile, reportPaymentsReconcile } from './payments-reconcile.ts'

export { createBillingOpsContext, type BillingOpsContext, billingAudit, billingReplay, usageReconcile, paymentsReconcile, DEFAULT_GRACE_SECONDS }
export type { ReplayOptions, ReplayCounts } from './billing-replay.ts'
export type { ReconcileOptions, ReconcileResult } from './usage-reconcile.ts'
export type { PaymentsReconcileOptions, PaymentsReconcileResult } from './payments-reconcile.ts'

export const BILLING_COMMANDS = ['billing:replay', 'billing:audit', 'usage:reconcile', 'payments:reconcile'] as const
export const BILLING_USAGE = `  pnpm ops billing:replay (--since <ISO time> | --from-seq <n>) [--until <ISO time>] [--dry-run]
  pnpm ops billing:audit
  pnpm ops usage:reconcile --since <ISO time> [--until <ISO time>] [--dry-run]
  pnpm ops payments:reconcile --since <ISO time> [--until <ISO time>] [--dry-run]   (orders created then; WECHATPAY_* needed)
  (env: billing's: DATABASE_URL, NATS_URL, EVENTS_NAMESPACE, REDIS_URL, REDIS_PREFIX, CHAT_URL, BILLING_URL, AUTH_URL, INTERNAL_TOKEN, SIGNUP_BONUS, MODEL_PRICES or CHAT_MODELS)`

export const isBillingCommand = (command: string | undefined): boolean => (BILLING_COMMANDS as readonly (string | undefined)[]).includes(command)

function time (name: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined
  const d = new Date(v)
  if (!/^\d{4}-\d\d-\d\d/.test(v) || Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO 8601 time, got ${JSON.stringify(v)}`)
  return d
}

/** Runs one of billing's commands with its arguments; returns the exit code (a usage mistake throws UsageError). */
export async function runBillingOps (command: string, args: string[], ctx: () => BillingOpsContext = () => createBillingOpsContext()): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { since: { type: 'string' }, until: { type: 'string' }, 'from-seq': { type: 'string' }, 'dry-run': { type: 'boolean', default: false } }
  })
  const dryRun = values['dry-run'] ?? false
  switch (command) {
    case 'billing:audit': {
      const c = ctx()
      try { return await billingAudit(c) } finally { await c.close() }
    }
    case 'billing:replay': {
      const since = time('since', values.since)
      const until = time('until', values.until)
      let fromSeq: number | undefined
      if (values['from-seq'] !== undefined) {
        fromSeq = Number(values['from-seq'])
        if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new UsageError('--from-seq must be a positive integer')
      }
      if ((since === undefined) === (fromSeq === undefined)) throw new UsageError('give exactly one of --since or --from-seq')
      const c = ctx()
      try {
        const r = await billingReplay(c, { since, fromSeq, until, dryRun })
        c.out(`${dryRun ? 'dry run: would apply' : 'applied'} ${r.applied}, already applied ${r.alreadyApplied}, rejected ${r.rejected} (read ${r.read} events${r.firstSeq === null ? '' : `, stream seq ${r.firstSeq}–${r.lastSeq}`})`)
        return 0
      } finally { await c.close() }
    }
    case 'usage:reconcile': {
      const since = time('since', values.since)
      if (since === undefined) throw new UsageError('--since is required')
      const c = ctx()
      try {
        const r = await usageReconcile(c, { since, until: time('until', values.until), dryRun })
        if (r.empty) {
          c.out(values.until === undefined
            ? `nothing settled yet: --since ${r.since.toISOString()} is within the last ${DEFAULT_GRACE_SECONDS} s (events that recent may still be on their way; give --until to include them)`
            : `nothing to compare: --since ${r.since.toISOString()} is not before --until ${r.until.toISOString()}`)
          return 0
        }
        c.out(`chat recorded ${r.recorded}, billing applied ${r.applied}, missing ${r.missing.length}${dryRun ? ' (dry run: nothing requeued)' : `, requeued ${r.requeued}`}`)
        for (const id of r.missing.slice(0, 20)) c.out(`  missing ${id}`)
        if (r.missing.length > 20) c.out(`  … and ${r.missing.length - 20} more`)
        if (r.pending > 0) c.out(`chat holds ${r.pending} exchange(s) left pending by a process that stopped: its sweeper charges them (estimated) after CHAT_PENDING_STALE_MS`)
        return 0
      } finally { await c.close() }
    }
    case 'payments:reconcile': {
      const since = time('since', values.since)
      if (since === undefined) throw new UsageError('--since is required')
      const until = time('until', values.until)
      const c = ctx()
      try {
        return reportPaymentsReconcile(c, await paymentsReconcile(c, { since, until, dryRun }), dryRun)
      } finally { await c.close() }
    }
    default:
      throw new UsageError(`${command} is not a billing command`)
  }
}
