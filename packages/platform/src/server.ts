// Process entry helpers: configuration errors end the process with a clear message; SIGTERM drains, then exits.
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { ConfigError } from './config.ts'

/** Runs `main`; a ConfigError prints the variables at fault and exits 1 before anything starts. */
export async function runMain (service: string, main: () => Promise<void>): Promise<void> {
  try {
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
