// Regenerate and automatic titles through the gateway (DESIGN §6.4): a streamed regenerate, the old reply superseded
// and out of the next prompt, a session titled by the model, and the money to the token (the title a ledger row of its own).
import t from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { startSimulator } from '@chat-platform/llm-simulator'
import { startSystem, type System } from './support/system.ts'
import { assertAuditPasses, assertExactBalance, assertProblem, listAll, pricedUsage, registerUser, sendStreaming, type SseEvent } from './support/client.ts'

t.setTimeout(180_000)

const sim = await startSimulator()
t.teardown(() => sim.close())
const system = await startSystem(t, { env: { OPENAI_BASE_URL: sim.url, OPENAI_API_KEY: 'sk-e2e', CHAT_AUTO_TITLE: 'true' } })

const isTitleCall = (messages: { role: string, content: string }[]) => messages[0]?.role === 'system' && messages[0].content.startsWith('Write a short title')

/** POST …/regenerate with Accept: text/event-stream through the gateway; the events of the whole answer. */
async function regenerateStreaming (system: System, token: string, sessionId: number, messageId: number): Promise<{ status: number, events: SseEvent[] }> {
  const res = await fetch(`${system.gatewayUrl}/api/sessions/${sessionId}/messages/${messageId}/regenerate`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }
  })
  const text = await res.text()
  const events = text.split('\n\n').filter((b) => b.includes('data:')).map((block) => {
    const lines = block.split('\n')
    return { event: lines.find((l) => l.startsWith('event:'))?.slice(6).trim() ?? 'message', data: JSON.parse(lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n')) }
  })
  return { status: res.status, events }
}

t.test('a streamed regenerate and an automatic title, through the gateway, charged to the token', async (t) => {
  const u = await registerUser(system, 'regen')
  const other = await registerUser(system, 'regen-other')
  sim.reset({ chunkSize: 4, reply: (messages) => isTitleCall(messages) ? '"Kyoto in autumn"' : `Answer ${sim.requests.length}: temples, gardens and food.` })
  const created = await system.request('POST', '/api/sessions', { token: u.token, body: {} })
  t.equal(created.body.title, '新会话')
  const sid = created.body.id as number

  const first = await sendStreaming(system, u.token, sid, 'Plan three days in Kyoto in autumn')
  t.equal(first.status, 200)
  const reply = first.events.at(-1)!.data
  await waitFor(async () => (await system.request('GET', '/api/sessions', { token: u.token })).body.find((s: { id: number }) => s.id === sid)?.title === 'Kyoto in autumn',
    { what: 'the session titled by the model', timeoutMs: 30_000 })

  const regen = await regenerateStreaming(system, u.token, sid, reply.id)
  t.equal(regen.status, 200)
  const done = regen.events.at(-1)!
  t.equal(done.event, 'done')
  t.ok(regen.events.length > 2, 'streamed in deltas')
  t.equal(regen.events.slice(0, -1).map((e) => e.data.content).join(''), done.data.content)
  t.not(done.data.content, reply.content, 'a new reply')

  const listed = await listAll(system, u.token, `/api/sessions/${sid}/messages`, 'oldest-first')
  t.same(listed.map((m) => [m.role, m.superseded]), [['user', false], ['assistant', true], ['assistant', false]], 'the old reply listed, superseded')
  t.same(listed[2], done.data)

  assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages/${reply.id}/regenerate`, { token: u.token }), 409, 'not_last_reply', 'the superseded reply')
  assertProblem(t, await system.request('POST', `/api/sessions/${sid}/messages/${done.data.id}/regenerate`, { token: other.token }), 404, 'not_found', 'another user\'s session')

  const next = await sendStreaming(system, u.token, sid, 'And a day trip?')
  t.equal(next.status, 200)
  const prompt = sim.requests.filter((r) => !isTitleCall(r.body.messages)).at(-1)!.body.messages.map((m) => m.content)
  t.ok(prompt.includes(done.data.content) && !prompt.includes(reply.content), 'the next prompt has the new reply, not the old one')
  t.equal(sim.requests.filter((r) => isTitleCall(r.body.messages)).length, 1, 'one title call')

  // The money: three exchanges (Σ message tokens with ratios 1) and the title, a ledger row that says so.
  let titleRow: { change_amount: number, description: string } | undefined
  await waitFor(async () => {
    const txs = await listAll(system, u.token, '/api/billing/transactions')
    titleRow = txs.find((x) => x.description.startsWith('会话标题'))
    return txs.filter((x) => x.description.startsWith('对话消耗')).length === 3 && titleRow !== undefined
  }, { what: 'three exchange charges and a title charge', timeoutMs: 30_000 })
  t.match(titleRow!.description, /^会话标题 · gpt-4o-mini · 输入 \d+ \+ 输出 \d+$/)
  await assertExactBalance(t, system, u, { usage: await pricedUsage(system, u) - titleRow!.change_amount })
  await assertAuditPasses(t, system)
})
