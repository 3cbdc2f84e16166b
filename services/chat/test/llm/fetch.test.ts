// The provider's HTTP client (src/llm/fetch.ts): the SDK's calls go out through undici.request, not the global fetch,
// and what comes back has the shapes the SDK reads (status, headers, body, aborts), against real loopback servers.
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { waitFor } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { LlmClient } from '../../src/llm/client.ts'
import { providerFetch } from '../../src/llm/fetch.ts'

async function server (t: { teardown: (fn: () => unknown) => void }, handle: (req: IncomingMessage, body: string, res: ServerResponse) => void): Promise<string> {
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => handle(req, Buffer.concat(chunks).toString('utf8'), res))
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { srv.closeAllConnections(); srv.close() })
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
}

/** Counts the global fetch's calls while `fn` runs (the SDK picks the global up when a client is built). */
async function countingGlobalFetch<T> (fn: () => Promise<T>): Promise<{ result: T, calls: number }> {
  const original = globalThis.fetch
  let calls = 0
  globalThis.fetch = (async (...args: Parameters<typeof fetch>) => { calls++; return await original(...args) }) as typeof fetch
  try {
    return { result: await fn(), calls }
  } finally {
    globalThis.fetch = original
  }
}

t.test('a JSON and a streamed completion through the SDK: answered in full, and the global fetch never called', async (t) => {
  const sim = await startSimulator({ usage: { prompt_tokens: 7, completion_tokens: 3 } })
  t.teardown(() => sim.close())
  const { result, calls } = await countingGlobalFetch(async () => {
    const client = new LlmClient({ baseURL: sim.url, apiKey: 'k', model: 'gpt-4o-mini', timeoutMs: 5000, maxRetries: 0, log: pino({ level: 'silent' }) })
    const json = await client.complete([{ role: 'user', content: 'hello json' }])
    const deltas: string[] = []
    const streamed = await client.stream([{ role: 'user', content: 'hello stream' }], (d) => deltas.push(d))
    return { json, streamed, deltas }
  })
  t.equal(calls, 0, 'no call went through the global fetch')
  t.match(result.json, { finished: true, usage: { prompt_tokens: 7, completion_tokens: 3 } })
  t.match(result.json.content, /hello json/)
  t.match(result.streamed, { finished: true, usage: { prompt_tokens: 7, completion_tokens: 3 } })
  t.ok(result.deltas.length > 1, 'the reply arrived in several deltas')
  t.equal(result.deltas.join(''), result.streamed.content)
  t.match(result.streamed.content, /hello stream/)
  t.equal(sim.requests.length, 2)
})

t.test('the request leaves as given (method, headers, body); the response has status, headers, url and a body read once', async (t) => {
  let seen: { method?: string, headers?: IncomingMessage['headers'], body?: string } = {}
  const base = await server(t, (req, body, res) => {
    seen = { method: req.method, headers: req.headers, body }
    res.setHeader('set-cookie', ['a=1', 'b=2'])
    res.writeHead(201, { 'content-type': 'application/json', 'x-request-id': 'req-9' }).end(JSON.stringify({ echoed: body.length }))
  })
  const headers = new Headers({ 'content-type': 'application/json', authorization: 'Bearer secret-key' })
  const res = await providerFetch(`${base}/v1/chat/completions`, { method: 'POST', headers, body: '{"model":"m"}' })
  t.same(seen, { method: 'POST', headers: { ...seen.headers, 'content-type': 'application/json', authorization: 'Bearer secret-key' }, body: '{"model":"m"}' })
  t.equal(res.status, 201)
  t.equal(res.ok, true)
  t.equal(res.statusText, 'Created')
  t.equal(res.url, `${base}/v1/chat/completions`)
  t.equal(res.headers.get('x-request-id'), 'req-9')
  t.same(res.headers.getSetCookie(), ['a=1', 'b=2'], 'a repeated header keeps every value')
  t.same(await res.json(), { echoed: 13 })
  t.equal(res.bodyUsed, true)

  const again = await providerFetch(new URL(`${base}/x`), { method: 'GET' })
  t.equal(again.status, 201)
  t.equal(await again.text(), '{"echoed":0}', 'a URL object is accepted; text() reads the body')
  const notOk = await server(t, (_req, _body, res) => { res.writeHead(503, { 'content-type': 'text/plain' }).end('busy') })
  const busy = await providerFetch(notOk)
  t.equal(busy.ok, false)
  t.equal(busy.statusText, 'Service Unavailable')
  t.equal(await busy.text(), 'busy')
  t.equal(Buffer.from(await (await providerFetch(notOk)).arrayBuffer()).toString('utf8'), 'busy', 'arrayBuffer() reads the body too')
})

t.test('the body is an async iterable of bytes, which the SDK can stop early', async (t) => {
  let closed = false
  const base = await server(t, (_req, _body, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
    res.on('close', () => { closed = true })
  })
  const res = await providerFetch(base, { method: 'POST', body: '{}' })
  const iterator = (res.body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
  const first = await iterator.next()
  t.ok(first.value instanceof Uint8Array)
  t.equal(Buffer.from(first.value!).toString('utf8'), 'data: one\n\n')
  await iterator.return!()
  await waitFor(async () => closed, { what: 'the connection closed once the body was given up' })
  t.ok(closed)
})

t.test('an abort before the headers or during the body rejects with an AbortError, as fetch does', async (t) => {
  const base = await server(t, (req, _body, res) => {
    if (req.url === '/slow') return // never answers
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
  })
  const before = new AbortController()
  const pending = providerFetch(`${base}/slow`, { method: 'POST', body: '{}', signal: before.signal })
  setImmediate(() => before.abort())
  await t.rejects(pending, { name: 'AbortError' })

  const during = new AbortController()
  const res = await providerFetch(`${base}/body`, { method: 'POST', body: '{}', signal: during.signal })
  const iterator = (res.body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
  await iterator.next()
  during.abort()
  await t.rejects(iterator.next(), { name: 'AbortError' })
})

t.test('a body undici does not send as it is (a stream) goes through the global fetch', async (t) => {
  const base = await server(t, (_req, body, res) => { res.writeHead(200).end(`got ${body}`) })
  const { result, calls } = await countingGlobalFetch(async () => {
    const res = await providerFetch(base, { method: 'POST', body: new Blob(['streamed']).stream(), duplex: 'half' } as RequestInit)
    return await res.text()
  })
  t.equal(calls, 1)
  t.equal(result, 'got streamed')
})

t.test('nothing listening: the SDK call fails as unreachable (service_unavailable), not as a crash', async (t) => {
  // A port nothing listens on: taken, then given back.
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  const client = new LlmClient({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'k', model: 'm', timeoutMs: 5000, maxRetries: 0, log: pino({ level: 'silent' }) })
  for (const outcome of [await client.complete([{ role: 'user', content: 'hi' }]), await client.stream([{ role: 'user', content: 'hi' }], () => {})]) {
    t.equal(outcome.finished, false)
    t.equal(outcome.error?.code, 'service_unavailable')
  }
})
