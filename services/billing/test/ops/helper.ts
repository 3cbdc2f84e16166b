// Billing ops test helpers: a context over a test billing environment with the output captured, and a runner like the CLI's.
import { createBillingOpsContext, runBillingOps, type BillingOpsContext } from '../../src/ops/index.ts'

export function opsContext (env: Record<string, string>) {
  const lines: string[] = []
  const make = () => createBillingOpsContext({ ...env, LOG_LEVEL: 'silent' }, (l) => lines.push(l))
  return { lines, make }
}

/** `pnpm ops <argv>` for billing's commands, with the given context. */
export const runOps = (argv: string[], make: () => BillingOpsContext) => runBillingOps(argv[0], argv.slice(1), make)

/** The repository root (the CLI runs from there). */
export const ROOT = new URL('../../../../', import.meta.url).pathname
