// Models through the real processes (DESIGN §6.4): CHAT_MODELS read by chat and billing alike, two fake providers
// behind CHAT_PROVIDERS with the first failing; every configured model is priced the same by chat (what admission
// counts) and billing (the ledger), exactly one charge per exchange, and the ledger audits clean.
import t from 'tap'
import pg from 'pg'
import { waitFor } from '@chat-platform/platform/testing'
import { priceExchange } from '@chat-platform/contracts'
import { startSimulator } from '@chat-platform/llm-simulator'
import { loadChatConfig } from '@chat-platform/chat/config.ts'
import { loadBillingConfig } from '@chat-platform/billing/config.ts'
import { startSystem } from './support/system.ts'
import { assertAuditPasses, listAll, registerUser, sendStreaming } from './support/client.ts'

t.setTimeout(240_000)

// Ratios with decimals, so a rounding difference between the two services would show.
const MODELS = [
  { id: 'gpt-main', name: 'Main', input_ratio: 1.5, output_ratio: 4.25, context_tokens: 32_000, default: true },
  { id: 'gpt-cheap', name: 'Cheap', input_ratio: 0.15, output_ratio: 0.6 },
  { id: 'gpt-odd', name: 'Odd', input_ratio: 0.333333, output_ratio: 1.000001, context_tokens: 16_000 }
]

t.test('chat and billing read the same prices from CHAT_MODELS, and never charge an unknown model 0', async (t) => {
  const env = { CHAT_MODELS: JSON.stringify(MODELS), JWT_PUBLIC_KEY: 'unused', NODE_ENV: 'test' }
  const chat = loadChatConfig(env)
  const billing = loadBillingConfig(env)
  t.same(billing.MODEL_PRICES, chat.MODEL_PRICES, 'one source')
  for (const m of [...MODELS.map((x) => x.id), 'not-configured']) {
    for (const [prompt, completion] of [[0, 0], [1, 1], [812, 230], [7, 0], [0, 3], [99_999, 12_345]]) {
      t.equal(priceExchange(chat.MODEL_PRICES, m, prompt, completion), priceExchange(billing.MODEL_PRICES, m, prompt, completion), `${m} ${prompt}+${completion}`)
    }
  }
  t.equal(priceExchange(billing.MODEL_PRICES, 'not-configured', 10, 10), 20, 'an unknown model costs ratios 1 and 1, never 0')
  t.throws(() => loadBillingConfig({ ...env, MODEL_PRICES: '{"gpt-main":{"input":9,"output":9}}' }), /MODEL_PRICES/, 'both set: refused, no second source')
  t.throws(() => loadBillingConfig({ ...env, CHAT_MODELS: '[{"id":"a","name":"A","input_ratio":0.1234567,"output_ratio":1}]' }), /CHAT_MODELS/)
})

t.test('through the gateway: each model charged by billing exactly as chat priced it, failed over from a broken provider', async (t) => {
  const broken = await startSimulator({ errorStatus: 503 })
  const good = await startSimulator()
  t.teardown(() => Promise.all([broken.close(), good.close()]))
  const providers = [
    { name: 'broken', base_url: broken.url, api_key: 'sk-broken', models: MODELS.map((m) => m.id) },
    { name: 'good', base_url: good.url, api_key: 'sk-good', models: MODELS.map((m) => m.id) }
  ]
  const system = await startSystem(t, {
    env: { CHAT_MODELS: JSON.stringify(MODELS) },
    procEnv: { chat: { CHAT_PROVIDERS: JSON.stringify(providers), CHAT_AUTO_TITLE: 'false', CHAT_BREAKER_FAILURES: '1000' } }
  })
  const user = await registerUser(system, 'models')

  const listed = await system.request('GET', '/api/models', { token: user.token })
  t.equal(listed.status, 200)
  t.same(listed.body.map((m: { id: string }) => m.id), MODELS.map((m) => m.id))
  t.equal(listed.body.filter((m: { default: boolean }) => m.default).length, 1)

  const sessions: Record<string, number> = {}
  for (const m of MODELS) {
    const res = await system.request('POST', '/api/sessions', { token: user.token, body: { title: m.name, model: m.id } })
    t.equal(res.status, 200)
    t.equal(res.body.model, m.id)
    sessions[m.id] = res.body.id
  }
  const changed = await system.request('PATCH', `/api/sessions/${sessions['gpt-odd']}`, { token: user.token, body: { system_prompt: 'Reply tersely.' } })
  t.equal(changed.status, 200, 'PATCH reaches chat through the gateway')
  t.equal(changed.body.system_prompt, 'Reply tersely.')

  for (const m of MODELS) {
    const json = await system.request('POST', `/api/sessions/${sessions[m.id]}/messages`, { token: user.token, body: { content: `hello ${m.id}` } })
    t.equal(json.status, 200, `${m.id} JSON`)
    const sse = await sendStreaming(system, user.token, sessions[m.id], `stream ${m.id} please`)
    t.equal(sse.events.at(-1)?.event, 'done', `${m.id} SSE`)
  }
  // A per-message model in another model's session.
  t.equal((await system.request('POST', `/api/sessions/${sessions['gpt-main']}/messages`, { token: user.token, body: { content: 'cheaper please', model: 'gpt-cheap' } })).status, 200)
  const bad = await system.request('POST', `/api/sessions/${sessions['gpt-main']}/messages`, { token: user.token, body: { content: 'x', model: 'gpt-nope' } })
  t.equal(bad.status, 400)

  t.equal(good.requests.length, 7, 'every exchange answered by the good provider, once')
  t.equal(broken.requests.length, 7, 'each tried the broken one first, once')
  t.same([...new Set(good.requests.map((r) => r.body.model))].sort(), MODELS.map((m) => m.id).sort(), 'each model asked by its id')
  t.equal(good.requests.filter((r) => r.body.messages[0]?.content === 'Reply tersely.').length, 2, 'the session\'s system prompt reached the provider')

  // Billing's ledger: one usage row per exchange, at the model's ratios from the tokens chat recorded.
  const ratios = Object.fromEntries(MODELS.map((m) => [m.id, { input: m.input_ratio, output: m.output_ratio }]))
  let txs: { change_amount: number, description: string }[] = []
  await waitFor(async () => {
    txs = (await listAll(system, user.token, '/api/billing/transactions')).filter((x: { change_amount: number }) => x.change_amount < 0)
    return txs.length === 7
  }, { timeoutMs: 30_000, what: 'seven usage rows in the ledger' })
  const db = new pg.Client({ connectionString: system.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  const { rows } = await db.query<{ model: string, prompt_tokens: number, completion_tokens: number, estimated_amount: string }>('select model, prompt_tokens, completion_tokens, estimated_amount from chat.usage where user_id = $1 order by message_id', [user.id])
  t.equal(rows.length, 7)
  const expected = rows.map((r) => priceExchange(ratios, r.model, r.prompt_tokens, r.completion_tokens))
  t.same(rows.map((r) => Number(r.estimated_amount)), expected, 'chat priced each exchange at its model\'s ratios')
  t.same(txs.map((x) => -x.change_amount).sort((a, b) => a - b), [...expected].sort((a, b) => a - b), 'billing charged exactly what chat priced')
  for (const m of MODELS) t.ok(txs.some((x) => x.description.includes(` · ${m.id} · `)), `the ledger's description names ${m.id}`)
  await assertAuditPasses(t, system)
})
