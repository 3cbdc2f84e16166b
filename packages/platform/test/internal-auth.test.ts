// INTERNAL_TOKEN: /internal/ routes refuse calls without it (401) or with a wrong one (403); callService carries
// it and reports a failed call with its service, status and detail; production refuses to boot without it.
import { createServer, type AddressInfo } from 'node:net'
import t from 'tap'
import { Type } from 'typebox'
import type { FastifyInstance } from 'fastify'
import { INTERNAL_TOKEN_HEADER } from '@chat-platform/contracts'
import { CommonEnv, ConfigError, InternalEnv, ServiceCallError, callService, callServiceOrNull, createHttpApp, internalTokenMatches, loadConfig, setInternalToken } from '../src/index.ts'

const TOKEN = 'a-long-enough-internal-secret'
const failure = async (call: Promise<unknown>) => await call.then(() => { throw new Error('the call succeeded') }, (err: unknown) => err as ServiceCallError)

function build (internalToken: string | undefined) {
  const app = createHttpApp({ service: 'test', logLevel: 'silent', internalToken })
  app.get('/internal/things/:id', async (req) => ({ id: Number((req.params as { id: string }).id) }))
  app.post('/internal/things', { onRequest: async (req) => { (req as unknown as { seen: boolean }).seen = true } }, async (req) => ({ seen: (req as unknown as { seen: boolean }).seen }))
  app.get('/internal/fails', async () => { throw new ConfigError(['never shown']) })
  app.get('/public', async () => ({ ok: true }))
  // A route declared inside an encapsulated plugin is covered too.
  app.register(async (child: FastifyInstance) => { child.get('/internal/nested', async () => ({ nested: true })) })
  t.teardown(() => app.close())
  return app
}

t.test('with a token: 401 without it, 403 with a wrong one, the route with the right one', async (t) => {
  const app = build(TOKEN)
  for (const [method, url] of [['GET', '/internal/things/1'], ['HEAD', '/internal/things/1'], ['POST', '/internal/things'], ['GET', '/internal/nested']] as const) {
    const none = await app.inject({ method, url })
    t.equal(none.statusCode, 401, `${method} ${url} without the token`)
    if (method !== 'HEAD') t.match(none.json(), { code: 'unauthorized', detail: /x-internal-token/ })
    t.notOk(none.headers['www-authenticate'], 'not a bearer challenge')
    for (const wrong of ['wrong', TOKEN.slice(0, -1), `${TOKEN}x`, TOKEN.toUpperCase()]) {
      const res = await app.inject({ method, url, headers: { [INTERNAL_TOKEN_HEADER]: wrong } })
      t.equal(res.statusCode, 403, `${method} ${url} with ${JSON.stringify(wrong)}`)
      if (method !== 'HEAD') t.equal(res.json().code, 'forbidden')
    }
    t.equal((await app.inject({ method, url, headers: { [INTERNAL_TOKEN_HEADER]: '' } })).statusCode, 401, 'an empty header is no token')
    t.equal((await app.inject({ method, url, headers: { [INTERNAL_TOKEN_HEADER]: TOKEN } })).statusCode, 200, `${method} ${url} with the token`)
  }
  t.same((await app.inject({ method: 'POST', url: '/internal/things', headers: { [INTERNAL_TOKEN_HEADER]: TOKEN } })).json(), { seen: true }, "the route's own hooks still run")
  t.equal((await app.inject({ method: 'GET', url: '/public' })).statusCode, 200, 'other routes need no token')
  for (const url of ['/%69nternal/things/1', '/internal//things/1', '/INTERNAL/things/1', '/internal/things/1/', '/./internal/things/1']) {
    t.not((await app.inject({ method: 'GET', url })).statusCode, 200, `${url} is no way around the check`)
  }
})

t.test('without a token (development): internal routes are open', async (t) => {
  const app = build(undefined)
  t.same((await app.inject({ method: 'GET', url: '/internal/things/3' })).json(), { id: 3 })
})

t.test('the compare: equal strings only, any lengths', async (t) => {
  t.ok(internalTokenMatches(TOKEN, TOKEN))
  t.notOk(internalTokenMatches(undefined, TOKEN))
  t.notOk(internalTokenMatches('', TOKEN))
  t.notOk(internalTokenMatches(TOKEN.repeat(10), TOKEN))
})

t.test('callService carries the token; a failure names the service, the status and the detail', async (t) => {
  const server = build(TOKEN)
  const url = await server.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => setInternalToken(undefined))

  setInternalToken(TOKEN)
  t.same(await callService(url, '/internal/things/7'), { id: 7 })
  t.same(await callServiceOrNull(url, '/internal/things/8'), { id: 8 })
  t.equal(await callServiceOrNull(url, '/internal/nothing'), null, 'a 404 is null')

  setInternalToken(undefined)
  const missing = await failure(callService(url, '/internal/things/7', { service: 'things' }))
  t.type(missing, ServiceCallError)
  t.match(missing, { code: 'service_unavailable', statusCode: 503, service: 'things', status: 401, upstreamCode: 'unauthorized' })
  t.equal(missing.message, 'A service this request needs is unavailable; try again shortly.', 'what a client would see names nothing internal')
  t.match(missing.describe(), /^things GET \/internal\/things\/7 answered 401 unauthorized: Internal routes need the internal token/)

  setInternalToken('not-the-token-at-all')
  const wrong = await failure(callService(url, '/internal/things/7?x=1'))
  t.match(wrong, { status: 403, upstreamCode: 'forbidden', service: new URL(url).host })
  t.equal(wrong.describe(), `${new URL(url).host} GET /internal/things/7 answered 403 forbidden: The internal token is wrong.`, 'the query is left out')

  setInternalToken(TOKEN)
  const failed = await failure(callService(url, '/internal/fails', { service: 'things', method: 'GET' }))
  t.match(failed, { status: 500, upstreamCode: 'internal_error' })

  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const { port } = closed.address() as AddressInfo
  await new Promise((resolve) => closed.close(resolve))
  const down = await failure(callService(`http://127.0.0.1:${port}`, '/internal/things/7', { service: 'things', method: 'POST', body: {} }))
  t.type(down, ServiceCallError)
  t.match(down, { code: 'service_unavailable', status: null })
  t.match(down.describe(), /^things POST \/internal\/things\/7: no answer \(.*ECONNREFUSED/)
})

t.test('INTERNAL_TOKEN: required in production, at least 16 characters, its value never printed', async (t) => {
  const Schema = Type.Object({ ...CommonEnv, ...InternalEnv })
  t.equal(loadConfig(Schema, {}).INTERNAL_TOKEN, undefined, 'unset in development: open')
  t.equal(loadConfig(Schema, { NODE_ENV: 'production', INTERNAL_TOKEN: TOKEN }).INTERNAL_TOKEN, TOKEN)
  const missing = t.throws(() => loadConfig(Schema, { NODE_ENV: 'production' })) as ConfigError
  t.type(missing, ConfigError)
  t.match(missing.message, /INTERNAL_TOKEN: required when NODE_ENV=production/)
  t.throws(() => loadConfig(Schema, { NODE_ENV: 'production', INTERNAL_TOKEN: '' }), /INTERNAL_TOKEN: required/, 'empty is unset')
  const short = t.throws(() => loadConfig(Schema, { INTERNAL_TOKEN: 'short-secret' })) as ConfigError
  t.match(short.message, /INTERNAL_TOKEN/)
  t.notMatch(short.message, /short-secret/, 'the value is hidden')
})
