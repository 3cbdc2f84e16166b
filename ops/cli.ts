// `pnpm ops <command>`: billing:replay, billing:audit, usage:reconcile, admin:grant, admin:revoke (configured by the services' env vars).
import { parseArgs } from 'node:util'
import { ServiceCallError } from '@chat-platform/platform'
import { createOpsContext, type OpsContext } from './context.ts'
import { billingAudit } from './commands/billing-audit.ts'
import { billingReplay } from './commands/billing-replay.ts'
import { DEFAULT_GRACE_SECONDS, usageReconcile } from './commands/usage-reconcile.ts'
import { adminRole } from './commands/admin-role.ts'

const USAGE = `usage:
  pnpm ops billing:replay (--since <ISO time> | --from-seq <n>) [--until <ISO time>] [--dry-run]
  pnpm ops billing:audit
  pnpm ops usage:reconcile --since <ISO time> [--until <ISO time>] [--dry-run]
  pnpm ops admin:grant <email>      (env: AUTH_DATABASE_URL, else DATABASE_URL)
  pnpm ops admin:revoke <email>
env: DATABASE_URL, NATS_URL, EVENTS_NAMESPACE, REDIS_URL, REDIS_PREFIX, CHAT_URL, BILLING_URL, INTERNAL_TOKEN, SIGNUP_BONUS, MODEL_PRICES`

export class UsageError extends Error {}

function time (name: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined
  const d = new Date(v)
  if (!/^\d{4}-\d\d-\d\d/.test(v) || Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO 8601 time, got ${JSON.stringify(v)}`)
  return d
}

/** Runs one command; returns the exit code. */
export async function runOps (argv: string[], ctx: () => OpsContext): Promise<number> {
  const [command, ...rest] = argv
  if (command === 'admin:grant' || command === 'admin:revoke') {
    if (rest.length !== 1 || rest[0].startsWith('-') || !rest[0].trim()) throw new UsageError(`${command} takes one email address`)
    const c = ctx()
    try { return await adminRole(c, rest[0], command === 'admin:grant' ? 'grant' : 'revoke') } finally { await c.close() }
  }
  const { values } = parseArgs({
    args: rest,
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
    default:
      throw new UsageError(command ? `unknown command ${command}` : 'no command given')
  }
}

/** What the CLI prints for a failed command (exit 2): usage mistakes with the usage, a failed call with its service, status and detail. */
export function failureMessage (err: unknown): string {
  if (err instanceof UsageError || (err as Error).name === 'ConfigError' || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return `${(err as Error).message}\n${USAGE}`
  if (err instanceof ServiceCallError) return `ops failed: ${err.describe()}`
  return `ops failed: ${(err as Error).stack ?? String(err)}`
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    process.exitCode = await runOps(process.argv.slice(2), () => createOpsContext())
  } catch (err) {
    process.stderr.write(`${failureMessage(err)}\n`)
    process.exitCode = 2
  }
}
