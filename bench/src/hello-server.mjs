// Memory reference: a Fastify hello-world, run once with plain node and once under the tsx loader like the services.
import Fastify from 'fastify'

const app = Fastify({ logger: false })
app.get('/', async () => ({ hello: 'world' }))
const address = await app.listen({ host: '127.0.0.1', port: 0 })
process.send?.({ address })
