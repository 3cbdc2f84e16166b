// An offline LLM: an in-process HTTP server speaking the OpenAI chat completions wire protocol (JSON and SSE).
// Chat uses it when no OPENAI_API_KEY is set; tests use it as the fake provider, steering it with knobs.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createTokenizer, type PromptMessage, type Tokenizer } from '@chat-platform/tokenizer'

export const SIMULATED_PREFIX = '[simulated] '

export interface SimulatorKnobs {
  /** Delay before the response headers. */
  latencyMs: number
  /** Delay between streamed chunks. */
  chunkDelayMs: number
  /** Answer every request with this HTTP status and an OpenAI-style error body. */
  errorStatus?: number
  /** With errorStatus: only this many requests (counted from the last reset) get the error, later ones are answered. */
  errorTimes?: number
  /** With errorStatus: extra response headers (e.g. `retry-after`). */
  errorHeaders?: Record<string, string>
  /** Never answer (the connection stays open until the client gives up). */
  hang: boolean
  /** Answer only once this settles (tests use it to hold an exchange in flight). */
  hold?: Promise<unknown>
  /** Streaming: destroy the connection after this many content chunks. */
  cutAfterChunks?: number
  /** Streaming: stop writing (but keep the connection) after this many content chunks. */
  stallAfterChunks?: number
  /** Leave out `usage` (JSON) or the usage chunk (SSE). */
  omitUsage: boolean
  /** Report this usage instead of counting with the tokenizer. */
  usage?: { prompt_tokens: number, completion_tokens: number }
  /** The reply text; by default a labelled echo of the last user message. */
  reply?: string | ((messages: PromptMessage[]) => string)
  /** Pad the default reply to this many words (long streams). */
  words?: number
  /** Characters per streamed chunk. */
  chunkSize: number
}

export interface SimulatedRequest {
  body: { model: string, messages: PromptMessage[], stream?: boolean, stream_options?: { include_usage?: boolean }, max_tokens?: number }
  aborted: boolean
  finished: boolean
  /** performance.now() when the request's body had arrived. */
  receivedAt: number
  /** performance.now() right before the first byte of the answer was written (a stream's first chunk), if any. */
  firstChunkAt?: number
}

export interface Simulator {
  /** Base URL for the OpenAI SDK (…/v1). */
  url: string
  knobs: SimulatorKnobs
  requests: SimulatedRequest[]
  /** Requests whose client went away before the answer was complete. */
  aborts: () => number
  reset: (knobs?: Partial<SimulatorKnobs>) => void
  close: () => Promise<void>
}

const defaults = (): SimulatorKnobs => ({ latencyMs: 0, chunkDelayMs: 0, hang: false, omitUsage: false, chunkSize: 12 })

const LOREM = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua'.split(' ')

function defaultReply (messages: PromptMessage[], words?: number): string {
  const last = [...messages].reverse().find((m) => m.role === 'user')?.content ?? ''
  const quoted = last.length > 200 ? `${last.slice(0, 200)}…` : last
  let text = `${SIMULATED_PREFIX}Offline simulator reply. You said: "${quoted}"`
  if (words) text += ' ' + Array.from({ length: words }, (_, i) => LOREM[i % LOREM.length]).join(' ')
  return text
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The longest prefix of `text` (whole characters) that is at most `max` tokens. */
function truncateTokens (tokenizer: Tokenizer, text: string, max: number): string {
  // A token is at least one byte of UTF-8: a text of at most `max` bytes fits without being counted.
  if (Buffer.byteLength(text) <= max || tokenizer.count(text) <= max) return text
  const chars = Array.from(text)
  let lo = 0
  let hi = chars.length
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2)
    if (tokenizer.count(chars.slice(0, mid).join('')) <= max) lo = mid
    else hi = mid - 1
  }
  return chars.slice(0, lo).join('')
}

function chunks (text: string, size: number): string[] {
  const chars = Array.from(text)
  const out: string[] = []
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''))
  return out
}

export async function startSimulator (knobs: Partial<SimulatorKnobs> = {}, opts: { tokenizerModel?: string } = {}): Promise<Simulator> {
  const tokenizer: Tokenizer = await createTokenizer(opts.tokenizerModel ?? 'gpt-4o-mini')
  const state: SimulatorKnobs = { ...defaults(), ...knobs }
  const requests: SimulatedRequest[] = []
  let seq = 0
  /** Requests since the last reset (errorTimes counts them). */
  let received = 0

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || !/\/chat\/completions$/.test(req.url ?? '')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error', param: null, code: null } }))
      return
    }
    const raw: Buffer[] = []
    for await (const c of req) raw.push(c as Buffer)
    const receivedAt = performance.now()
    let body: SimulatedRequest['body']
    try {
      body = JSON.parse(Buffer.concat(raw).toString('utf8'))
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'invalid JSON', type: 'invalid_request_error', param: null, code: null } }))
      return
    }
    const record: SimulatedRequest = { body, aborted: false, finished: false, receivedAt }
    requests.push(record)
    res.on('close', () => { if (!res.writableFinished) record.aborted = true })
    const k = { ...state }
    const nth = ++received
    if (k.hang) return
    if (k.hold) await k.hold.catch(() => {})
    if (k.latencyMs) await sleep(k.latencyMs)
    if (res.destroyed) return
    if (k.errorStatus && (k.errorTimes === undefined || nth <= k.errorTimes)) {
      res.writeHead(k.errorStatus, { 'content-type': 'application/json', 'x-should-retry': 'false', ...k.errorHeaders })
      res.end(JSON.stringify({ error: { message: `simulated error ${k.errorStatus}`, type: 'server_error', param: null, code: null } }))
      return
    }
    const messages = body.messages ?? []
    const full = typeof k.reply === 'function' ? k.reply(messages) : k.reply ?? defaultReply(messages, k.words)
    // Like a provider, never more than max_tokens of output: the text is cut and finish_reason says "length".
    const text = body.max_tokens ? truncateTokens(tokenizer, full, body.max_tokens) : full
    const finishReason = text === full ? 'stop' : 'length'
    const counted = k.usage ?? { prompt_tokens: tokenizer.countPrompt(messages), completion_tokens: tokenizer.count(text) }
    const usage = body.max_tokens ? { ...counted, completion_tokens: Math.min(counted.completion_tokens, body.max_tokens) } : counted
    const usageBody = { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens }
    const id = `chatcmpl-sim-${++seq}`
    const created = Math.floor(Date.now() / 1000)
    const model = body.model

    if (!body.stream) {
      const completion: Record<string, unknown> = {
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: 'simulated',
        choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finishReason }]
      }
      if (!k.omitUsage) completion.usage = usageBody
      record.firstChunkAt = performance.now()
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(completion))
      record.finished = true
      return
    }

    record.firstChunkAt = performance.now()
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    const send = (chunk: unknown) => res.write(`data: ${JSON.stringify(chunk)}\n\n`)
    const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'simulated' }
    send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] })
    let n = 0
    for (const piece of chunks(text, k.chunkSize)) {
      if (res.destroyed) return
      if (k.cutAfterChunks !== undefined && n >= k.cutAfterChunks) {
        // Flush what was written, then drop the connection mid-response.
        await new Promise<void>((resolve) => res.write('', () => resolve()))
        res.socket?.destroy()
        return
      }
      if (k.stallAfterChunks !== undefined && n >= k.stallAfterChunks) return
      if (k.chunkDelayMs) await sleep(k.chunkDelayMs)
      if (res.destroyed) return
      send({ ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }] })
      n++
      // The first token leaves at once, as a provider's does (and as firstChunkAt says): Node corks a chunked
      // response's writes until the next tick, and without a chunk delay the rest of the reply, written in this
      // same tick, would hold it back while the simulator composes it.
      if (n === 1) for (let c = res.socket?.writableCorked ?? 0; c > 0; c--) res.socket!.uncork()
    }
    send({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }] })
    if (body.stream_options?.include_usage && !k.omitUsage) send({ ...base, choices: [], usage: usageBody })
    res.end('data: [DONE]\n\n')
    record.finished = true
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => { if (!res.headersSent) res.writeHead(500).end(); else res.destroy() })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/v1`,
    knobs: state,
    requests,
    aborts: () => requests.filter((r) => r.aborted).length,
    reset (next = {}) {
      for (const key of Object.keys(state) as (keyof SimulatorKnobs)[]) delete state[key]
      Object.assign(state, defaults(), next)
      received = 0
    },
    async close () {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
