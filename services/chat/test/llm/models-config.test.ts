// CHAT_MODELS / CHAT_PROVIDERS parsing (a bad value stops the boot naming the variable), the circuit breaker's
// states on a fake clock, Retry-After parsing and which failures move on to the next provider.
import t from 'tap'
import { APIError } from 'openai'
import { ConfigError, ProblemError } from '@chat-platform/platform'
import { loadChatConfig } from '../../src/config.ts'
import { ModelRegistry } from '../../src/llm/models.ts'
import { CircuitBreaker, DEFAULT_RETRY_AFTER_CAP_MS, type BreakerState } from '../../src/llm/breaker.ts'
import { classifyFailure, retryAfterMs } from '../../src/llm/router.ts'

const base = { JWT_PUBLIC_KEY: 'unused', NODE_ENV: 'test' }
const model = (id: string, extra: object = {}) => ({ id, name: id.toUpperCase(), input_ratio: 1, output_ratio: 2, ...extra })
const load = (env: Record<string, unknown>) => loadChatConfig({ ...base, ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])) })

t.test('CHAT_MODELS: accepted shapes and the resolved models', async (t) => {
  const one = load({ CHAT_MODELS: [model('solo')] })
  t.equal(one.CHAT_MODEL, 'solo', 'a single model is the default')
  t.same(one.CHAT_MODELS, [{ id: 'solo', name: 'SOLO', input_ratio: 1, output_ratio: 2, context_tokens: 8000 + 4096, default: true }])
  t.same(one.MODEL_PRICES, { solo: { input: 1, output: 2 } })
  const two = load({ CHAT_MODELS: [model('a'), model('b', { default: true, context_tokens: 9000 })], CHAT_MAX_OUTPUT_TOKENS: '1000' })
  t.equal(two.CHAT_MODEL, 'b')
  const reg = new ModelRegistry(two)
  t.equal(reg.default.id, 'b')
  t.equal(reg.promptBudget(reg.get('b')!), 8000, 'context_tokens − CHAT_MAX_OUTPUT_TOKENS')
  t.equal(reg.promptBudget(reg.get('a')!), 8000, 'without context_tokens: CHAT_CONTEXT_TOKENS')
  t.equal(reg.resolve(undefined, 'a').id, 'a')
  t.equal(reg.resolve('b', 'a').id, 'b', 'the message\'s model first')
  t.equal(reg.resolve('gone', null).id, 'b', 'an unknown id falls back to the default')
  t.same(load({ CHAT_MODELS: '  ' }).CHAT_MODELS.map((m) => m.id), ['gpt-4o-mini'], 'empty (compose passes "") is unset')
})

t.test('CHAT_MODELS and CHAT_PROVIDERS: every bad value stops the boot naming the variable', async (t) => {
  const ms = [model('a', { default: true }), model('b')]
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['not JSON', { CHAT_MODELS: '[{' }, /CHAT_MODELS: is not valid JSON/],
    ['not an array', { CHAT_MODELS: { id: 'a' } }, /CHAT_MODELS: must look like/],
    ['empty array', { CHAT_MODELS: [] }, /CHAT_MODELS/],
    ['missing ratio', { CHAT_MODELS: [{ id: 'a', name: 'A', input_ratio: 1 }] }, /CHAT_MODELS/],
    ['negative ratio', { CHAT_MODELS: [model('a', { input_ratio: -1 })] }, /CHAT_MODELS/],
    ['7 decimals', { CHAT_MODELS: [model('a', { output_ratio: 0.1234567 })] }, /CHAT_MODELS: ratio 0.1234567 of a has more than 6 decimals/],
    ['duplicate id', { CHAT_MODELS: [model('a', { default: true }), model('a')] }, /listed twice/],
    ['no default', { CHAT_MODELS: [model('a'), model('b')] }, /exactly one model must have "default": true \(found 0\)/],
    ['two defaults', { CHAT_MODELS: [model('a', { default: true }), model('b', { default: true })] }, /found 2/],
    ['only model not default', { CHAT_MODELS: [model('a', { default: false })] }, /cannot be "default": false/],
    ['id "*"', { CHAT_MODELS: [model('*')] }, /CHAT_MODELS/],
    ['unknown field', { CHAT_MODELS: [model('a', { price: 3 })] }, /CHAT_MODELS/],
    ['window too small', { CHAT_MODELS: [model('a', { context_tokens: 4100 })] }, /context_tokens of "a" must exceed CHAT_MAX_OUTPUT_TOKENS \(4096\)/],
    ['MODEL_PRICES too', { CHAT_MODELS: ms, MODEL_PRICES: { a: { input: 1, output: 1 } } }, /MODEL_PRICES: must be unset/],
    ['providers without models', { CHAT_PROVIDERS: [{ name: 'p', base_url: 'http://x/v1', api_key: 'k', models: ['a'] }] }, /CHAT_PROVIDERS: needs CHAT_MODELS/],
    ['provider of an unknown model', { CHAT_MODELS: ms, CHAT_PROVIDERS: [{ name: 'p', base_url: 'http://x/v1', api_key: 'k', models: ['a', 'b', 'c'] }] }, /"c", which is not in CHAT_MODELS/],
    ['unserved model', { CHAT_MODELS: ms, CHAT_PROVIDERS: [{ name: 'p', base_url: 'http://x/v1', api_key: 'k', models: ['a'] }] }, /no provider serves "b"/],
    ['duplicate provider', { CHAT_MODELS: ms, CHAT_PROVIDERS: [{ name: 'p', base_url: 'http://x/v1', api_key: 'k', models: ['a', 'b'] }, { name: 'p', base_url: 'http://y/v1', api_key: 'k', models: ['a'] }] }, /provider name "p" is listed twice/],
    ['bad base_url', { CHAT_MODELS: ms, CHAT_PROVIDERS: [{ name: 'p', base_url: 'ftp://x', api_key: 'k', models: ['a', 'b'] }] }, /CHAT_PROVIDERS/],
    ['no key', { CHAT_MODELS: ms, CHAT_PROVIDERS: [{ name: 'p', base_url: 'http://x/v1', api_key: '', models: ['a', 'b'] }] }, /CHAT_PROVIDERS/]
  ]
  for (const [name, env, re] of cases) {
    t.throws(() => load(env), ConfigError, name)
    t.throws(() => load(env), re, name)
  }
  const secret = 'sk-very-secret-key'
  try {
    load({ CHAT_MODELS: ms, CHAT_PROVIDERS: [{ name: 'p', base_url: 'http://x/v1', api_key: secret, models: ['a'] }] })
    t.fail('refused')
  } catch (err) {
    t.notMatch((err as Error).message, secret, 'a provider\'s key never appears in the boot error')
  }
  const ok = load({ CHAT_MODELS: ms, CHAT_PROVIDERS: [{ name: 'p1', base_url: 'http://x/v1', api_key: 'k', models: ['a'] }, { name: 'p2', base_url: 'https://y/v1', api_key: 'k', models: ['a', 'b'] }] })
  t.same(ok.CHAT_PROVIDERS!.map((p) => p.name), ['p1', 'p2'])
})

t.test('circuit breaker: closed → open after N failures → half-open single probe → closed or open again', async (t) => {
  let now = 0
  const seen: BreakerState[] = []
  const b = new CircuitBreaker({ failures: 3, cooldownMs: 1000, now: () => now, onChange: (s) => seen.push(s) })
  t.ok(b.allow())
  b.failure()
  b.failure()
  b.success()
  b.failure()
  b.failure()
  t.equal(b.state, 'closed', 'a success resets the count: failures must be consecutive')
  b.failure()
  t.equal(b.state, 'open')
  t.notOk(b.allow(), 'open: refused')
  now = 999
  t.notOk(b.allow(), 'still cooling down')
  now = 1000
  t.ok(b.allow(), 'one probe after the cool-down')
  t.equal(b.state, 'half_open')
  t.notOk(b.allow(), 'only one probe at a time')
  b.release()
  t.ok(b.allow(), 'a probe without a verdict frees the slot')
  b.failure()
  t.equal(b.state, 'open', 'a failed probe opens it again at once')
  t.notOk(b.allow())
  now = 2000
  t.ok(b.allow())
  b.success()
  t.equal(b.state, 'closed')
  t.ok(b.allow() && b.allow(), 'closed: everyone')
  t.same(seen, ['open', 'half_open', 'open', 'half_open', 'closed'])

  // A long Retry-After used to leave the state closed while calls were refused, so chat_llm_provider_state showed a
  // provider kept out as healthy (issue #15): it now opens the circuit for the wait, even below CHAT_BREAKER_FAILURES.
  b.failure(5000)
  t.equal(b.state, 'open', 'one failure with a long Retry-After opens it: the state says the provider is kept out')
  t.notOk(b.allow(), 'calls stay away until then')
  b.success()
  t.equal(b.state, 'open', 'a call begun before the 429 that ends well does not cut the wait short')
  now = 6999
  t.notOk(b.allow())
  now = 7000
  t.ok(b.allow(), 'then one probe')
  t.equal(b.state, 'half_open')
  b.success()
  t.equal(b.state, 'closed')
  t.same(seen.slice(5), ['open', 'half_open', 'closed'])
})

t.test('circuit breaker: a huge Retry-After keeps the provider out at most the cap', async (t) => {
  let now = 1_000_000
  const seen: BreakerState[] = []
  const b = new CircuitBreaker({ failures: 5, cooldownMs: 1000, retryAfterCapMs: 60_000, now: () => now, onChange: (s) => seen.push(s) })
  b.failure(1e12)
  t.equal(b.state, 'open')
  now += 59_999
  t.notOk(b.allow(), 'kept out for the cap')
  now += 1
  t.ok(b.allow(), 'probed again once the cap has passed, not 1e12 ms later')
  t.notOk(b.allow(), 'one probe at a time')
  b.failure(1e12)
  t.equal(b.state, 'open', 'asked to wait again: open again, for the cap again')
  now += 59_999
  t.notOk(b.allow())
  now += 1
  t.ok(b.allow())
  b.success()
  t.equal(b.state, 'closed', 'a probe that answers closes it')
  t.same(seen, ['open', 'half_open', 'open', 'half_open', 'closed'])

  // The default cap is CHAT_LLM_RETRY_AFTER_CAP_MS's: 300 s, also for a Retry-After that parses to years.
  const d = new CircuitBreaker({ failures: 5, cooldownMs: 1000, now: () => now })
  d.failure(retryAfterMs(new Headers({ 'retry-after': String(1e12) })))
  const from = now
  now = from + DEFAULT_RETRY_AFTER_CAP_MS - 1
  t.notOk(d.allow())
  now = from + DEFAULT_RETRY_AFTER_CAP_MS
  t.ok(d.allow())
  t.equal(DEFAULT_RETRY_AFTER_CAP_MS, load({}).CHAT_LLM_RETRY_AFTER_CAP_MS, 'the config default is the same')
})

t.test('Retry-After parsing and which failures move on', async (t) => {
  const h = (o: Record<string, string>) => new Headers(o)
  t.equal(retryAfterMs(h({ 'retry-after': '2' })), 2000)
  t.equal(retryAfterMs(h({ 'retry-after': '0.5' })), 500)
  t.equal(retryAfterMs(h({ 'retry-after-ms': '150', 'retry-after': '9' })), 150, 'retry-after-ms first')
  t.equal(retryAfterMs(h({ 'retry-after': new Date(10_000 + 3000).toUTCString() }), 10_000), 3000, 'an HTTP date')
  t.equal(retryAfterMs(h({ 'retry-after': 'soon' })), undefined)
  t.equal(retryAfterMs(undefined), undefined)

  const api = (status: number, headers: Record<string, string> = {}) => new ProblemError('upstream_error', 'x', { cause: APIError.generate(status, { message: 'x' }, 'x', new Headers(headers)) })
  t.same(classifyFailure(api(429, { 'retry-after': '1' })), { reason: 'rate_limited', retriable: true, status: 429, retryAfterMs: 1000 })
  for (const status of [500, 502, 503, 401, 403, 404, 408, 409]) t.equal(classifyFailure(api(status)).retriable, true, `${status} moves on`)
  for (const status of [400, 413, 422]) t.equal(classifyFailure(api(status)).retriable, false, `${status} does not`)
  t.equal(classifyFailure(new ProblemError('upstream_timeout', 'x')).reason, 'timeout')
  t.equal(classifyFailure(new ProblemError('service_unavailable', 'x')).reason, 'connect')
  t.equal(classifyFailure(new ProblemError('upstream_error', 'broke off')).reason, 'broken')
})

t.test('a provider that echoes its API key in an error: the key is in no error chat keeps or logs (message, body, stack)', async (t) => {
  const { createServer } = await import('node:http')
  const pino = (await import('pino')).default
  const secret = 'sk-echoed-secret-0123456789'
  const server = createServer((req, res) => {
    req.resume()
    const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '')
    const status = req.url?.includes('/bad/') ? 401 : 500
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${key}`, type: 'invalid_request_error', param: key, code: 'invalid_api_key' } }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as { port: number }
  const { LlmClient } = await import('../../src/llm/client.ts')
  for (const path of ['bad', 'broken']) {
    const client = new LlmClient({ baseURL: `http://127.0.0.1:${port}/${path}/v1`, apiKey: secret, model: 'm', timeoutMs: 5000, maxRetries: 0, log: pino({ level: 'silent' }) })
    const json = await client.complete([{ role: 'user', content: 'hi' }])
    const streamed = await client.stream([{ role: 'user', content: 'hi' }], () => {})
    for (const outcome of [json, streamed]) {
      t.ok(outcome.error, `${path}: the call failed`)
      const cause = outcome.error!.cause as Error & { error?: unknown, param?: unknown }
      t.ok(cause instanceof APIError, 'the cause is still the SDK\'s error (failover reads its status)')
      t.equal(classifyFailure(outcome.error).status, path === 'bad' ? 401 : 500)
      const logged = JSON.stringify(pino.stdSerializers.err(outcome.error as Error)) + cause.message + String(cause.stack) + JSON.stringify(cause.error) + String(cause.param)
      t.notMatch(logged, secret, `${path}: the key is nowhere in the error`)
      t.match(cause.message, /Incorrect API key provided: \[redacted\]/, 'the rest of the provider\'s message is kept')
    }
  }
})
