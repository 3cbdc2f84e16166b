// Extra processes a section starts beside the system: another gateway (the bundle the system runs) and a trivial upstream.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, waitFor } from '@chat-platform/platform/testing'
import type { BenchContext } from './context.ts'
import { ROOT_DIR } from './procs.ts'

export interface ExtraProc { url: string, child: ChildProcess }

export async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  await exited
}

/**
 * One more gateway process (the bundle the system runs) with the system's environment, the same Redis and keys, and
 * `env` on top (e.g. its revocation namespace, or another upstream). Ready once its /readyz answers 200.
 */
export async function startExtraGateway (ctx: BenchContext, env: Record<string, string>): Promise<ExtraProc> {
  const port = await freePort()
  const all: NodeJS.ProcessEnv = { ...process.env, ...ctx.system.env, ...env, PORT: String(port) }
  delete all.NODE_V8_COVERAGE
  const child = spawn(process.execPath, ['--enable-source-maps', 'dist/server.mjs'], { cwd: join(ROOT_DIR, 'gateway'), env: all, stdio: ['ignore', 'ignore', 'pipe'] })
  let output = ''
  child.stderr!.on('data', (b: Buffer) => { output = (output + b.toString()).slice(-4000) })
  ctx.teardowns.teardown(() => stopChild(child))
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`an extra gateway exited with ${child.exitCode}: ${output}`)
    return (await fetch(`${url}/readyz`).catch(() => null))?.ok
  }, { timeoutMs: 60_000, intervalMs: 100, what: 'an extra gateway' })
  return { url, child }
}

/** A bare node:http server answering every request at once with a small JSON body (/healthz included). */
export async function startTrivialUpstream (ctx: BenchContext): Promise<ExtraProc> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./trivial-upstream.mjs', import.meta.url))], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  ctx.teardowns.teardown(() => stopChild(child))
  const [port] = await Promise.race([
    once(child, 'message') as Promise<[number]>,
    once(child, 'exit').then(() => { throw new Error('the trivial upstream exited') })
  ])
  return { url: `http://127.0.0.1:${port}`, child }
}
