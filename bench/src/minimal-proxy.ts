// The baseline proxy: plain Fastify + @fastify/http-proxy in front of UPSTREAM, no auth, no limits, no logging.
import Fastify from 'fastify'
import httpProxy from '@fastify/http-proxy'

const app = Fastify({ logger: false })
await app.register(httpProxy, { upstream: process.env.UPSTREAM!, prefix: '/' })
const address = await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) })
process.send?.({ address })
process.stdout.write(`listening ${address}\n`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
