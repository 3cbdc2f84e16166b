// GET /docs: one OpenAPI document merged from the real services; it matches the committed docs/openapi.json and docs/api.md.
// `pnpm docs:api` (UPDATE_API_DOCS=1) rewrites both from the running services after a route changes.
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { startGateway, startUpstream } from '../helper.ts'
import { startServices } from '../services.ts'
import { renderApiMarkdown } from '../api-markdown.ts'

const root = resolve(import.meta.dirname, '../../..')
const openapiPath = resolve(root, 'docs/openapi.json')
const markdownPath = resolve(root, 'docs/api.md')

/** The routes existing clients use (the seed's API): they must stay documented with their schemas. */
const SEED_ROUTES: { method: string, path: string, hasBody: boolean }[] = [
  ['post', '/api/auth/wechat-login', true],
  ['post', '/api/auth/email-login', true],
  ['post', '/api/auth/register', true],
  ['get', '/api/auth/verify', false],
  ['get', '/api/user/profile', false],
  ['put', '/api/user/profile', true],
  ['get', '/api/user/balance', false],
  ['post', '/api/sessions', true],
  ['get', '/api/sessions', false],
  ['delete', '/api/sessions/{session_id}', false],
  ['post', '/api/sessions/{session_id}/messages', true],
  ['get', '/api/sessions/{session_id}/messages', false],
  ['post', '/api/billing/recharge', true],
  ['get', '/api/billing/transactions', false]
].map(([method, path, hasBody]) => ({ method: method as string, path: path as string, hasBody: hasBody as boolean }))
const PUBLIC = new Set(['/api/auth/register', '/api/auth/email-login', '/api/auth/wechat-login'])

t.test('every route is documented with its schemas, and the committed reference matches the routes', async (t) => {
  const urls = await startServices(t, ['auth', 'chat', 'billing'])
  const gw = await startGateway(t, { AUTH_URL: urls.auth, CHAT_URL: urls.chat, BILLING_URL: urls.billing })

  const res = await fetch(`${gw.url}/docs/json`)
  t.equal(res.status, 200)
  const doc = await res.json()
  t.match(doc.openapi, /^3\./)
  t.notOk(doc['x-unavailable-services'], 'every service answered')
  for (const route of SEED_ROUTES) {
    const op = doc.paths?.[route.path]?.[route.method]
    const name = `${route.method.toUpperCase()} ${route.path}`
    if (!t.ok(op, `${name} is documented`)) continue
    if (route.hasBody) t.ok(op.requestBody?.content?.['application/json']?.schema, `${name}: request body schema`)
    t.ok(op.responses?.['200']?.content?.['application/json']?.schema, `${name}: 200 response schema`)
    for (const param of route.path.match(/\{(\w+)\}/g) ?? []) {
      t.ok(op.parameters?.some((p: { in: string, name: string }) => p.in === 'path' && `{${p.name}}` === param), `${name}: path parameter ${param}`)
    }
    t.same(op.security, PUBLIC.has(route.path) ? [] : [{ bearer: [] }], `${name}: security`)
    t.ok(op.responses['429'] && op.responses['503'], `${name}: the gateway's own errors are documented`)
  }
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith('/internal') || p === '/healthz'), 'internal and health routes stay out')

  const json = JSON.stringify(doc, null, 2) + '\n'
  const markdown = renderApiMarkdown(doc)
  if (process.env.UPDATE_API_DOCS === '1') {
    writeFileSync(openapiPath, json)
    writeFileSync(markdownPath, markdown)
    t.pass('docs/openapi.json and docs/api.md rewritten')
  } else {
    t.equal(readFileSync(openapiPath, 'utf8'), json, 'docs/openapi.json matches the routes (run `pnpm docs:api` after changing a route)')
    t.equal(readFileSync(markdownPath, 'utf8'), markdown, 'docs/api.md matches the routes (run `pnpm docs:api` after changing a route)')
  }

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
