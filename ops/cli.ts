// `pnpm ops <command>`: the one dispatcher for the services' ops commands, each reached through its package's `./ops` entry.
import { ServiceCallError, UsageError } from '@chat-platform/platform'
import { BILLING_USAGE, createBillingOpsContext, isBillingCommand, runBillingOps, type BillingOpsContext } from '@chat-platform/billing/ops'
import { AUTH_USAGE, createAuthOpsContext, isAuthCommand, runAuthOps, type AuthOpsContext } from '@chat-platform/auth/ops'

const USAGE = `usage:\n${BILLING_USAGE}\n${AUTH_USAGE}`

/** How each service's commands get their context (tests hand in their own environment and output). */
export interface OpsContexts { billing: () => BillingOpsContext, auth: () => AuthOpsContext }

export const defaultContexts: OpsContexts = { billing: () => createBillingOpsContext(), auth: () => createAuthOpsContext() }

/** Runs one command with the service that owns it; returns the exit code. */
export async function runOps (argv: string[], contexts: OpsContexts = defaultContexts): Promise<number> {
  const [command, ...rest] = argv
  if (isBillingCommand(command)) return await runBillingOps(command, rest, contexts.billing)
  if (isAuthCommand(command)) return await runAuthOps(command, rest, contexts.auth)
  throw new UsageError(command ? `unknown command ${command}` : 'no command given')
}

/** What the CLI prints for a failed command (exit 2): usage mistakes with the usage, a failed call with its service, status and detail. */
export function failureMessage (err: unknown): string {
  if (err instanceof UsageError || (err as Error).name === 'ConfigError' || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return `${(err as Error).message}\n${USAGE}`
  if (err instanceof ServiceCallError) return `ops failed: ${err.describe()}`
  return `ops failed: ${(err as Error).stack ?? String(err)}`
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    process.exitCode = await runOps(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`${failureMessage(err)}\n`)
    process.exitCode = 2
  }
}
