// METRICS_TOKEN: with it set, the gateway's /metrics answers only `Authorization: Bearer <token>`; without it, /metrics stays open.
import t from 'tap'
import { loadGatewayConfig } from '../../src/config.ts'
import { startGateway } from '../helper.ts'

const TOKEN = 'metrics-token-0123456789abcdef'

t.test('with METRICS_TOKEN set, /metrics needs the bearer token; everything else is unchanged', async (t) => {
  const gw = await startGateway(t, { METRICS_TOKEN: TOKEN })
  const refused: Record<string, Record<string, string>> = {
    'no header': {},
    'a wrong token': { authorization: 'Bearer metrics-token-0123456789abcdeX' },
    'a prefix of the token': { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
    'the token with more after it': { authorization: `Bearer ${TOKEN}x` },
    'the bare token': { authorization: TOKEN },
    'another scheme': { authorization: `Basic ${TOKEN}` }
  }
  for (const [name, headers] of Object.entries(refused)) {
    for (const url of ['/metrics', '/metrics?name=x']) {
      const res = await fetch(gw.url + url, { headers })
      t.equal(res.status, 401, `${name}: ${url} is 401`)
      t.equal(res.headers.get('www-authenticate'), 'Bearer')
      t.match(res.headers.get('content-type'), /^application\/problem\+json/)
      const body = await res.json()
      t.match(body, { code: 'unauthorized', status: 401 })
      t.equal(body.request_id, res.headers.get('x-request-id'))
      t.notMatch(JSON.stringify(body), /http_request_duration_seconds/, 'no metric leaks')
    }
  }
  const head = await fetch(`${gw.url}/metrics`, { method: 'HEAD' })
  t.equal(head.status, 401, 'HEAD is guarded too')

  const ok = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(ok.status, 200)
  t.match(await ok.text(), /http_request_duration_seconds/)
  t.equal((await fetch(`${gw.url}/metrics`, { method: 'HEAD', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200)

  for (const path of ['/healthz', '/readyz']) t.not((await fetch(gw.url + path)).status, 401, `${path} needs no token`)
})

t.test('without METRICS_TOKEN, /metrics is open as before', async (t) => {
  const gw = await startGateway(t)
  const res = await fetch(`${gw.url}/metrics`)
  t.equal(res.status, 200)
  t.match(await res.text(), /gateway_upstream_request_duration_seconds|http_request_duration_seconds/)
})

t.test('a METRICS_TOKEN shorter than 16 characters is refused at boot without showing it', async (t) => {
  t.throws(() => loadGatewayConfig({ METRICS_TOKEN: 'short' }), /METRICS_TOKEN/)
  try {
    loadGatewayConfig({ METRICS_TOKEN: 'short' })
  } catch (err) {
    t.notMatch((err as Error).message, /short"/, 'the value is hidden')
  }
  t.equal(loadGatewayConfig({ METRICS_TOKEN: '' }).METRICS_TOKEN, undefined, 'empty is unset')
})
