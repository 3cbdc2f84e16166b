// Memory reference: what a bare Fastify process costs with plain node and under the tsx loader the services run with.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { rssOf, TSX_LOADER, type Rss } from '../procs.ts'
import { sleep } from '../stats.ts'

export async function helloRss (settleMs: number): Promise<{ plain: Rss | null, tsx: Rss | null }> {
  const file = fileURLToPath(new URL('../hello-server.mjs', import.meta.url))
  const measure = async (args: string[]) => {
    const child = spawn(process.execPath, [...args, file], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    try {
      await once(child, 'message')
      await sleep(settleMs)
      return rssOf(child.pid)
    } finally {
      child.kill('SIGKILL')
    }
  }
  return { plain: await measure([]), tsx: await measure(['--import', TSX_LOADER]) }
}
