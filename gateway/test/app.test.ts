// The app's edge concerns: CORS preflights answered by the gateway itself, and configuration refused with a clear message.
import t from 'tap'
import { ConfigError } from '@chat-platform/platform'
import { startGateway, startUpstream } from './helper.ts'
import { loadGatewayConfig } from '../src/config.ts'

t.test('CORS: a preflight is answered at the edge, before any token check, and never proxied', async (t) => {
  const chat = await startUpstream(t, { name: 'chat' })
  const gw = await startGateway(t, { CHAT_URL: chat.url, CORS_ORIGINS: 'https://app.example.com, https://admin.example.com' })
  const preflight = await fetch(`${gw.url}/api/sessions/1/messages`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, idempotency-key' }
  })
  t.equal(preflight.status, 204)
  t.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example.com')
  t.match(preflight.headers.get('access-control-allow-methods'), /POST/)
  t.match(preflight.headers.get('access-control-allow-headers'), /authorization/)
  t.match(preflight.headers.get('access-control-allow-headers'), /idempotency-key/)
  t.equal(preflight.headers.get('access-control-max-age'), '600')
  t.equal(chat.seen.length, 0, 'the service never saw the preflight')

  const actual = await fetch(`${gw.url}/api/sessions`, { headers: { origin: 'https://app.example.com' } })
  t.equal(actual.status, 401)
  t.equal(actual.headers.get('access-control-allow-origin'), 'https://app.example.com', 'errors carry CORS headers too, so browsers can read them')
  t.match(actual.headers.get('access-control-expose-headers'), /x-request-id/)
  t.match(actual.headers.get('access-control-expose-headers'), /retry-after/)

  const stranger = await fetch(`${gw.url}/api/sessions`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } })
  t.notOk(stranger.headers.get('access-control-allow-origin'), 'an origin not on the list is not allowed')
})

t.test('without CORS_ORIGINS there is no CORS at all', async (t) => {
  const gw = await startGateway(t)
  const res = await fetch(`${gw.url}/api/sessions`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' } })
  t.equal(res.status, 404)
  t.notOk(res.headers.get('access-control-allow-origin'))
})

t.test('bad configuration is refused, naming the variable', async (t) => {
  const bad: Record<string, string> = {
    TRUST_PROXY: 'sometimes',
    CORS_ORIGINS: 'app.example.com',
    RATE_LIMIT_MAX: '0',
    UPSTREAM_TIMEOUT_MS: 'soon',
    CHAT_URL: 'ftp://chat'
  }
  for (const [name, value] of Object.entries(bad)) {
    let error: unknown
    try { loadGatewayConfig({ [name]: value }) } catch (err) { error = err }
    t.ok(error instanceof ConfigError && error.message.includes(name), `${name} is named in the error`)
  }
  const config = loadGatewayConfig({})
  t.equal(config.PORT, 8080)
  t.equal(config.TRUST_PROXY, 'false')
  t.equal(config.UPSTREAM_CONNECT_TIMEOUT_MS, 3000)
})
