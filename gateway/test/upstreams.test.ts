// Upstream behaviour through a real gateway: SSE unbuffered both ways in time, down and slow services, replicas and retries.
import t from 'tap'
import { request as httpRequest } from 'node:http'
import { freePort, signTestToken, waitFor } from '@chat-platform/platform/testing'
import { startGateway, startUpstream, bearer, type Teardown } from './helper.ts'

const token = signTestToken(11)
const headers = { ...bearer(token), 'content-type': 'application/json' }

t.test('SSE: the first event reaches the client while the service is still writing; nothing waits for the end', async (t) => {
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  const chat = await startUpstream(t, {
    name: 'chat',
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('event: delta\ndata: {"content":"Hel"}\n\n')
      // The rest is only written once the client has shown it received the first event.
      released.then(() => {
        res.write('event: delta\ndata: {"content":"lo"}\n\n')
        res.end('event: done\ndata: {"id":1}\n\n')
      }, () => {})
    }
  })
  const gw = await startGateway(t, { CHAT_URL: chat.url })
  const res = await fetch(`${gw.url}/api/sessions/1/messages`, { method: 'POST', headers: { ...headers, accept: 'text/event-stream' }, body: '{"content":"hi"}' })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  t.equal(res.headers.get('x-accel-buffering'), 'no')
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let received = ''
  while (!received.includes('\n\n')) {
    const { value, done } = await reader.read()
    if (done) break
    received += decoder.decode(value, { stream: true })
  }
  t.equal(received, 'event: delta\ndata: {"content":"Hel"}\n\n', 'first event delivered before the service went on')
  release()
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    received += decoder.decode(value, { stream: true })
  }
  t.match(received, /event: done/)
})

t.test('SSE: the response headers reach the client as soon as the service sent them, before any event', async (t) => {
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  const chat = await startUpstream(t, {
    name: 'chat',
    handler: (_req, res) => {
      // What chat does once an exchange is admitted, before the model has answered anything.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-chat-admitted': 'yes' })
      res.flushHeaders()
      released.then(() => { res.end('event: delta\ndata: {"content":"Hi"}\n\nevent: done\ndata: {"id":1}\n\n') }, () => {})
    }
  })
  const gw = await startGateway(t, { CHAT_URL: chat.url })
  // Nothing is released before the headers have arrived: a gateway holding them until the first event never answers.
  const res = await fetch(`${gw.url}/api/sessions/1/messages`, { method: 'POST', headers: { ...headers, accept: 'text/event-stream' }, body: '{"content":"hi"}', signal: AbortSignal.timeout(10_000) })
  t.equal(res.status, 200)
  t.equal(res.headers.get('x-chat-admitted'), 'yes')
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  t.equal(res.headers.get('x-accel-buffering'), 'no')
  t.equal(res.headers.get('cache-control'), 'no-cache')
  t.ok(res.headers.get('x-request-id'), 'the gateway\'s own headers are in the early head too')
  release()
  t.equal(await res.text(), 'event: delta\ndata: {"content":"Hi"}\n\nevent: done\ndata: {"id":1}\n\n')
})

// An address literal is dispatched straight to the pool; a host name through the DNS interceptor behind the hang-up handler.
for (const via of ['an address literal', 'a host name'] as const) {
  t.test(`a client hang-up reaches the service at once: mid-stream and before the answer started (${via})`, (t) => hangUp(t, via))
}

async function hangUp (t: Teardown & { pass: (message: string) => void }, via: 'an address literal' | 'a host name') {
  const closed: string[] = []
  const chat = await startUpstream(t, {
    name: 'chat',
    handler: (req, res, seen) => {
      res.on('close', () => { if (!res.writableFinished) closed.push(seen.url) })
      if (req.url?.includes('stream')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('event: delta\ndata: {"content":"a"}\n\n')
      }
      // otherwise: never answers, like an LLM that is still thinking
    }
  })
  const lookup = (origin: URL, _opts: unknown, cb: (err: NodeJS.ErrnoException | null, addresses: { address: string, family: 4, ttl: number }[]) => void) => {
    cb(null, [{ address: new URL(chat.url).hostname, family: 4, ttl: 60_000 }])
  }
  const gw = via === 'an address literal'
    ? await startGateway(t, { CHAT_URL: chat.url })
    : await startGateway(t, { CHAT_URL: `http://chat.internal:${chat.port}` }, { lookup: lookup as never })

  const streaming = new AbortController()
  const res = await fetch(`${gw.url}/api/sessions/1/messages?stream`, { method: 'POST', headers, body: '{"content":"hi"}', signal: streaming.signal })
  const reader = res.body!.getReader()
  await reader.read()
  streaming.abort()
  await waitFor(() => closed.includes('/api/sessions/1/messages?stream'), { what: 'the service to see the streaming client leave' })
  t.pass('mid-stream hang-up propagated')

  const waiting = new AbortController()
  const pending = fetch(`${gw.url}/api/sessions/2/messages`, { method: 'POST', headers, body: '{"content":"hi"}', signal: waiting.signal }).catch((err: Error) => err)
  await waitFor(() => chat.seen.some((s) => s.url === '/api/sessions/2/messages'), { what: 'the request to reach the service' })
  waiting.abort()
  await pending
  await waitFor(() => closed.includes('/api/sessions/2/messages'), { what: 'the service to see the waiting client leave' })
  t.pass('hang-up before the answer propagated')
}

t.test('a service that is down answers 503 service_unavailable; the other services keep working', async (t) => {
  const auth = await startUpstream(t, { name: 'auth' })
  const gw = await startGateway(t, { AUTH_URL: auth.url, CHAT_URL: `http://127.0.0.1:${await freePort()}`, UPSTREAM_CONNECT_RETRIES: '0' })
  for (const [method, path] of [['GET', '/api/sessions'], ['POST', '/api/sessions']]) {
    const res = await fetch(gw.url + path, { method, headers, body: method === 'POST' ? '{}' : undefined, signal: AbortSignal.timeout(10_000) })
    t.equal(res.status, 503, `${method} ${path}`)
    t.match(res.headers.get('content-type'), /^application\/problem\+json/)
    const body = await res.json()
    t.equal(body.code, 'service_unavailable')
    t.equal(body.request_id, res.headers.get('x-request-id'))
    t.notMatch(body.detail, /127\.0\.0\.1|ECONNREFUSED/, 'no internal address or error leaks')
  }
  const ok = await fetch(`${gw.url}/api/auth/verify`, { headers })
  t.equal(ok.status, 200, 'auth routes still answer')
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(metrics, /gateway_upstream_errors_total\{[^}]*upstream="chat"[^}]*kind="connect_refused"[^}]*\} 2/)
  const ready = await fetch(`${gw.url}/readyz`)
  t.equal(ready.status, 503)
  const status = await ready.json()
  t.equal(status.checks.auth, 'ok')
  t.match(status.checks.chat, /failing/)
  t.notMatch(JSON.stringify(status), /127\.0\.0\.1|:\d{2,5}/, 'no internal address in the public readiness answer')
})

t.test('a service that accepts but does not answer gives 503 after UPSTREAM_TIMEOUT_MS, not a hang', async (t) => {
  const billing = await startUpstream(t, { name: 'billing', handler: () => {} })
  const gw = await startGateway(t, { BILLING_URL: billing.url, UPSTREAM_TIMEOUT_MS: '300', UPSTREAM_CONNECT_RETRIES: '0' })
  const res = await fetch(`${gw.url}/api/user/balance`, { headers, signal: AbortSignal.timeout(10_000) })
  t.equal(res.status, 503)
  t.equal((await res.json()).code, 'service_unavailable')
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  t.match(metrics, /gateway_upstream_errors_total\{[^}]*upstream="billing"[^}]*kind="timeout"/)
})

/** Two replicas of chat on 127.0.0.2 and 127.0.0.3 (same port), behind one name, as compose --scale or a headless service gives. */
async function twoReplicas (t: Teardown, env: Record<string, string> = {}) {
  const a = await startUpstream(t, { name: 'a', host: '127.0.0.2' })
  const b = await startUpstream(t, { name: 'b', host: '127.0.0.3', port: a.port })
  const lookup = (origin: URL, _opts: unknown, cb: (err: NodeJS.ErrnoException | null, addresses: { address: string, family: 4, ttl: number }[]) => void) => {
    if (origin.hostname !== 'chat.internal') return cb(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }), [])
    cb(null, [{ address: '127.0.0.2', family: 4, ttl: 60_000 }, { address: '127.0.0.3', family: 4, ttl: 60_000 }])
  }
  const gw = await startGateway(t, { CHAT_URL: `http://chat.internal:${a.port}`, ...env }, { lookup: lookup as never })
  return { a, b, gw }
}

t.test('requests are spread round-robin over every address of a service', async (t) => {
  const { a, b, gw } = await twoReplicas(t)
  const replicas: string[] = []
  for (let i = 0; i < 6; i++) {
    const res = await fetch(`${gw.url}/api/sessions`, { headers })
    t.equal(res.status, 200)
    replicas.push((await res.json()).upstream)
  }
  t.equal(a.seen.length, 3)
  t.equal(b.seen.length, 3)
  t.equal(a.seen[0].headers.host, `chat.internal:${a.port}`, 'the Host header names the service, not the address')
  t.not(replicas[0], replicas[1], 'consecutive requests go to different replicas')
})

t.test('a dead replica: idempotent requests are retried on the next address, POST is not', async (t) => {
  // No cool-down, so the dead address keeps its turn and the retry rule is what is being tested.
  const { a, b, gw } = await twoReplicas(t, { UPSTREAM_DOWN_COOLDOWN_MS: '0' })
  await b.stop()
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`${gw.url}/api/sessions`, { headers })
    t.equal(res.status, 200, `GET ${i} served by the live replica`)
  }
  t.equal(a.seen.filter((s) => s.method === 'GET').length, 4)
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`${gw.url}/api/sessions`, { method: 'POST', headers, body: '{"title":"x"}' })
    await res.arrayBuffer()
    statuses.push(res.status)
  }
  t.same(statuses.filter((s) => s === 503).length, 2, 'every POST that drew the dead address failed instead of being sent twice')
  t.equal(a.seen.filter((s) => s.method === 'POST').length, 2)
})

t.test('with the cool-down, a replica that refused a connection is skipped for a while', async (t) => {
  const { a, b, gw } = await twoReplicas(t, { UPSTREAM_DOWN_COOLDOWN_MS: '60000' })
  await b.stop()
  // Two GETs: one of them draws the dead address, fails to connect and is retried on the live one.
  for (let i = 0; i < 2; i++) t.equal((await fetch(`${gw.url}/api/sessions`, { headers })).status, 200)
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`${gw.url}/api/sessions`, { method: 'POST', headers, body: '{}' })
    await res.arrayBuffer()
    t.equal(res.status, 200, `POST ${i} avoided the dead replica`)
  }
  t.equal(a.seen.length, 6)
})

t.test('HTTP/1.1 keep-alive clients and HEAD work through the proxy', async (t) => {
  const chat = await startUpstream(t, { name: 'chat' })
  const gw = await startGateway(t, { CHAT_URL: chat.url })
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${gw.url}/api/sessions`, { method: 'HEAD', headers }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end()
  })
  t.equal(status, 200)
})
