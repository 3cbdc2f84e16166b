// GET /docs: one OpenAPI document merged from the real services, holding every route of DESIGN §2 with its schemas.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { startGateway, startUpstream } from '../helper.ts'
import { startServices } from '../services.ts'

const root = resolve(import.meta.dirname, '../../..')
const designPath = [resolve(root, 'docs/DESIGN.md'), resolve(root, 'DESIGN.md'), resolve(root, '../shared/DESIGN.md')].find(existsSync)

/** The rows of the DESIGN §2 API table: method, path, and whether a body is sent. */
function designRoutes (): { method: string, path: string, hasBody: boolean }[] {
  const text = readFileSync(designPath!, 'utf8')
  const section = text.slice(text.indexOf('## 2.'), text.indexOf('### Errors'))
  const rows = [...section.matchAll(/^\| (GET|POST|PUT|DELETE|PATCH) (\/\S+) \| \w+ \| ([^|]+) \|/gm)]
  return rows.map((m) => ({ method: m[1].toLowerCase(), path: m[2], hasBody: m[3].trim() !== '–' }))
}

t.test('every route of DESIGN §2 is documented with its request and response schemas', async (t) => {
  if (!designPath) return t.fail('DESIGN.md not found next to the repository')
  const routes = designRoutes()
  t.equal(routes.length, 14, 'the DESIGN table was read')
  const urls = await startServices(t, ['auth', 'chat', 'billing'])
  const gw = await startGateway(t, { AUTH_URL: urls.auth, CHAT_URL: urls.chat, BILLING_URL: urls.billing })

  const res = await fetch(`${gw.url}/docs/json`)
  t.equal(res.status, 200)
  const doc = await res.json()
  t.match(doc.openapi, /^3\./)
  t.notOk(doc['x-unavailable-services'], 'every service answered')
  for (const route of routes) {
    const op = doc.paths?.[route.path]?.[route.method]
    const name = `${route.method.toUpperCase()} ${route.path}`
    if (!t.ok(op, `${name} is documented`)) continue
    if (route.hasBody) t.ok(op.requestBody?.content?.['application/json']?.schema, `${name}: request body schema`)
    t.ok(op.responses?.['200']?.content?.['application/json']?.schema, `${name}: 200 response schema`)
    for (const param of route.path.match(/\{(\w+)\}/g) ?? []) {
      t.ok(op.parameters?.some((p: { in: string, name: string }) => p.in === 'path' && `{${p.name}}` === param), `${name}: path parameter ${param}`)
    }
    const isPublic = ['/api/auth/register', '/api/auth/email-login', '/api/auth/wechat-login'].includes(route.path)
    t.same(op.security, isPublic ? [] : [{ bearer: [] }], `${name}: security`)
    t.ok(op.responses['429'] && op.responses['503'], `${name}: the gateway's own errors are documented`)
  }
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith('/internal') || p === '/healthz'), 'internal and health routes stay out')

  const ui = await fetch(`${gw.url}/docs`)
  t.equal(ui.status, 200)
  t.match(ui.headers.get('content-type'), /text\/html/)
  t.match(await ui.text(), /swagger/i, 'a browsable UI')
})

t.test('a service that is down leaves its routes out, says so, and is merged in once it is back', async (t) => {
  let up = false
  const doc = (paths: Record<string, unknown>) => JSON.stringify({ openapi: '3.0.3', info: { title: 'x', version: '1' }, paths, components: { schemas: {} } })
  const auth = await startUpstream(t, { name: 'auth', handler: (_req, res) => res.end(doc({ '/api/auth/verify': { get: { responses: { 200: { description: 'ok' } } } } })) })
  const chat = await startUpstream(t, {
    name: 'chat',
    handler: (_req, res) => {
      if (!up) { res.statusCode = 503; return res.end() }
      res.end(doc({ '/api/sessions': { get: { responses: { 200: { description: 'ok' } } } } }))
    }
  })
  const gw = await startGateway(t, { AUTH_URL: auth.url, CHAT_URL: chat.url, DOCS_CACHE_MS: '0' })
  const first = await (await fetch(`${gw.url}/docs/json`)).json()
  t.ok(first.paths['/api/auth/verify'])
  t.notOk(first.paths['/api/sessions'])
  t.same(first['x-unavailable-services'], ['chat', 'billing'])
  up = true
  const second = await (await fetch(`${gw.url}/docs/json`)).json()
  t.ok(second.paths['/api/sessions'].get, 'chat merged in once it answers')
})
