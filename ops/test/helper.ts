// Ops test helpers: an ops context over a test billing environment, with the output captured.
import { createOpsContext } from '../context.ts'

export function opsContext (env: Record<string, string>) {
  const lines: string[] = []
  const make = () => createOpsContext({ ...env, LOG_LEVEL: 'silent' }, (l) => lines.push(l))
  return { lines, make }
}
