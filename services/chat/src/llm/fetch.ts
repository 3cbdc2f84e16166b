// The provider's HTTP client under the openai SDK: undici's request() behind the `fetch` option the SDK documents.
// The global fetch cost chat a third of its CPU under the send load (WHATWG streams for the request and the
// response body, a tee of the request, AbortSignal plumbing, header guards); this path costs a third of that.
import { STATUS_CODES } from 'node:http'
import { Agent, request, type Dispatcher } from 'undici'

/**
 * One connection pool for every provider, for the life of the process, as fetch's global dispatcher is (idle
 * connections do not keep the process alive). Its headers and body timeouts are undici's (300 s); the calls'
 * own deadlines (CHAT_LLM_TIMEOUT_MS) are chat's.
 */
const agent = new Agent()

/**
 * What the SDK reads of a response: `ok`, `status`, `headers` (a real Headers), `url`, `json()`/`text()`, and the
 * body, which it iterates (any async iterable will do: undici's body is a Node stream of Uint8Arrays) or cancels
 * through its iterator's `return()`.
 */
class ProviderResponse {
  readonly ok: boolean
  readonly status: number
  readonly headers: Headers
  readonly body: Dispatcher.ResponseData['body']
  readonly url: string

  constructor (status: number, headers: Headers, body: Dispatcher.ResponseData['body'], url: string) {
    this.ok = status >= 200 && status < 300
    this.status = status
    this.headers = headers
    this.body = body
    this.url = url
  }

  get statusText (): string { return STATUS_CODES[this.status] ?? '' }
  get bodyUsed (): boolean { return this.body.bodyUsed }
  async json (): Promise<unknown> { return await this.body.json() }
  async text (): Promise<string> { return await this.body.text() }
  async arrayBuffer (): Promise<ArrayBuffer> { return await this.body.arrayBuffer() }
}

/** A body undici sends as it is; anything else (a stream, a form) goes through the global fetch. */
const plainBody = (body: RequestInit['body']): body is string | Uint8Array | null | undefined =>
  body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array

/**
 * A `fetch` for the openai SDK: a URL (string or URL) with a string body, as every chat completion is, goes out
 * through undici.request; anything else through the global fetch. Failures keep fetch's shapes where the SDK
 * reads them: an aborted signal rejects with the signal's reason (an AbortError), a network failure with
 * undici's error (the SDK wraps both, as it wraps fetch's). No redirects are followed and no compression is
 * asked for (the SDK's requests need neither).
 */
export async function providerFetch (input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  if ((typeof input !== 'string' && !(input instanceof URL)) || !plainBody(init.body)) return await fetch(input, init)
  const res = await request(input, {
    method: (init.method ?? 'GET') as Dispatcher.HttpMethod,
    headers: init.headers as Dispatcher.RequestOptions['headers'],
    body: init.body ?? undefined,
    signal: init.signal ?? undefined,
    dispatcher: agent
  })
  const headers = new Headers()
  for (const [name, value] of Object.entries(res.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else if (value !== undefined) headers.append(name, value)
  }
  return new ProviderResponse(res.statusCode, headers, res.body, String(input)) as unknown as Response
}
