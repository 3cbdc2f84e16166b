// Process entry helpers: configuration errors end the process with a clear message; SIGTERM drains, then exits.
import { setFlagsFromString } from 'node:v8'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { ConfigError } from './config.ts'

/** Runs `main`; a ConfigError prints the variables at fault and exits 1 before anything starts. */
export async function runMain (service: string, main: () => Promise<void>): Promise<void> {
  try {
    tuneHeap()
    await main()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: refusing to start, ${err.message}\n`)
    } else {
      process.stderr.write(`${service}: failed to start: ${(err as Error)?.stack ?? String(err)}\n`)
    }
    process.exit(1)
  }
}

/** V8's old generation may grow to this percentage above its live size before a full collection (HEAP_GROWING_PERCENT). */
export const DEFAULT_HEAP_GROWING_PERCENT = 40

/**
 * Bounds how far V8 lets the heap grow past what is live. Left to itself V8 grows the old generation up to 4× its
 * live size between full collections when the process allocates fast; under the benchmark's send load, with every
 * exchange's objects alive for a model call (so promoted), chat's heap reached 225 MB for ~50 MB live and its RSS
 * 300 MB. A factor of 1.4 kept it under 180 MB for about the same CPU (bench/README.md). V8 reads the flag at every
 * collection, so setting it at start-up works; Node refuses it in NODE_OPTIONS. 0 leaves V8's own heuristics.
 */
export function tuneHeap (env: Record<string, string | undefined> = process.env): number {
  const raw = env.HEAP_GROWING_PERCENT
  const percent = raw === undefined || raw === '' ? DEFAULT_HEAP_GROWING_PERCENT : Number(raw)
  if (!Number.isInteger(percent) || percent < 0 || percent > 300) {
    throw new ConfigError([`HEAP_GROWING_PERCENT: must be an integer from 0 (V8's own heuristics) to 300 (got ${JSON.stringify(raw)})`])
  }
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`)
  return percent
}

/**
 * Listens, and on SIGTERM/SIGINT stops accepting, drains in-flight requests (app.close), then runs the
 * cleanup hooks registered with app.addHook('onClose') (consumers, relays, pools) before exiting.
 */
export async function listenWithGrace (app: FastifyInstance, opts: { port: number, host: string, graceMs: number }): Promise<string> {
  closeWithGrace({ delay: opts.graceMs }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'closing after an uncaught error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
  return await app.listen({ port: opts.port, host: opts.host })
}
