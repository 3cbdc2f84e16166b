// Reconfiguring the running system for one section: restart a process with extra environment, and put it back.
import type { ProcName } from '@chat-platform/e2e/support/system.ts'
import type { BenchContext } from './context.ts'

/**
 * Restarts `name` with `env` added to its own environment (a `--cpu-prof` hook set for it is kept) and returns
 * a function that restarts it again as it was (call it in a `finally`, so the next section gets the system it
 * expects). Its pid changes: read it after this returns.
 */
export async function restartWith (ctx: BenchContext, name: ProcName, env: Record<string, string>): Promise<() => Promise<void>> {
  const procEnv = (ctx.system.opts.procEnv ??= {})
  const original = procEnv[name]
  procEnv[name] = { ...original, ...env }
  await ctx.system.stop(name)
  await ctx.system.start(name)
  let restored = false
  const restore = async () => {
    if (restored) return
    restored = true
    if (original === undefined) delete procEnv[name]
    else procEnv[name] = original
    await ctx.system.stop(name)
    await ctx.system.start(name)
  }
  return restore
}

export const pidOf = (ctx: BenchContext, name: ProcName): number | undefined => ctx.system.procs.get(name)?.child?.pid
