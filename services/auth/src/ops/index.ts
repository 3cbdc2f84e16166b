// Auth's ops commands (`pnpm ops admin:grant | admin:revoke <email>`): the package's `./ops` entry point.
import { UsageError } from '@chat-platform/platform'
import { createAuthOpsContext, type AuthOpsContext } from './context.ts'
import { adminRole } from './admin-role.ts'

export { createAuthOpsContext, type AuthOpsContext, adminRole }

export const AUTH_COMMANDS = ['admin:grant', 'admin:revoke'] as const
export const AUTH_USAGE = `  pnpm ops admin:grant <email>
  pnpm ops admin:revoke <email>
  (env: AUTH_DATABASE_URL, else DATABASE_URL)`

export const isAuthCommand = (command: string | undefined): boolean => (AUTH_COMMANDS as readonly (string | undefined)[]).includes(command)

/** Runs one of auth's commands with its arguments; returns the exit code (a usage mistake throws UsageError). */
export async function runAuthOps (command: string, args: string[], ctx: () => AuthOpsContext = () => createAuthOpsContext()): Promise<number> {
  if (!isAuthCommand(command)) throw new UsageError(`${command} is not an auth command`)
  if (args.length !== 1 || args[0].startsWith('-') || !args[0].trim()) throw new UsageError(`${command} takes one email address`)
  const c = ctx()
  try { return await adminRole(c, args[0], command === 'admin:grant' ? 'grant' : 'revoke') } finally { await c.close() }
}
