// Chat's domain metrics appear in /metrics and move: model calls, their errors and first token, the outbox backlog, settled and retried records.
import t from 'tap'
import { sql } from 'kysely'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp, sample } from './helper.ts'
import { insertUserMessage } from '../src/db/repositories/exchanges.ts'

t.test('model calls: latency by provider, model, mode and outcome; errors; first token of streams', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  const provider = new URL(s.llm.url).host
  const text = (await s.app.inject({ url: '/metrics' })).body
  for (const name of ['chat_llm_call_duration_seconds', 'chat_llm_call_errors_total', 'chat_llm_first_token_seconds', 'chat_outbox_backlog', 'chat_pending_exchanges_settled_total', 'chat_record_retries_total']) {
    t.match(text, `# TYPE ${name} `, `${name} is exposed`)
  }
  const json = { provider, model: 'gpt-4o-mini', mode: 'json', outcome: 'ok' }
  t.equal((await s.send(1, session.id, 'hello')).statusCode, 200)
  t.equal(await sample(s, 'chat_llm_call_duration_seconds_count', json), 1)
  t.equal((await s.send(1, session.id, 'streamed', { accept: 'text/event-stream' })).statusCode, 200)
  t.equal(await sample(s, 'chat_llm_call_duration_seconds_count', { ...json, mode: 'stream' }), 1)
  t.equal(await sample(s, 'chat_llm_first_token_seconds_count', { provider, model: 'gpt-4o-mini' }), 1)
  t.ok(Number.isNaN(await sample(s, 'chat_llm_call_errors_total')), 'no error yet')

  s.llm.knobs.errorStatus = 500
  t.equal((await s.send(1, session.id, 'fails')).statusCode, 502)
  t.equal(await sample(s, 'chat_llm_call_errors_total', { provider, mode: 'json', outcome: 'upstream_error' }), 1)
  t.equal(await sample(s, 'chat_llm_call_duration_seconds_count', { ...json, outcome: 'upstream_error' }), 1)
  s.llm.reset()
  s.llm.knobs.cutAfterChunks = 1
  s.llm.knobs.chunkSize = 2
  await s.send(1, session.id, 'cut me off please', { accept: 'text/event-stream' })
  t.equal(await sample(s, 'chat_llm_call_errors_total', { mode: 'stream', outcome: 'partial' }), 1)
})

t.test('the outbox backlog counts unpublished events', async (t) => {
  const s = await buildTestApp(t)
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  t.equal(await sample(s, 'chat_outbox_backlog'), 0)
  await s.deps.relay.stop()
  await s.send(1, session.id, 'one')
  await s.send(1, session.id, 'two')
  t.equal(await sample(s, 'chat_outbox_backlog'), 2, 'the relay is stopped: two wait')
  await s.deps.relay.start()
  await waitFor(async () => await sample(s, 'chat_outbox_backlog') === 0, { what: 'the backlog drains' })
})

t.test('the sweeper\'s settled exchanges and the background record retries are counted', async (t) => {
  const s = await buildTestApp(t, { CHAT_PENDING_SWEEP_MS: '100', CHAT_PENDING_STALE_MS: '0' })
  await s.seedBalance(1, 10_000)
  const session = await s.createSession(1)
  await insertUserMessage(s.deps.db, { session_id: session.id, user_id: 1, role: 'user', content: 'q', content_tokens: 1, status: 'pending', error_code: null, exchange_model: 'gpt-4o-mini', exchange_prompt_tokens: 3, lease_ms: -1 })
  await waitFor(async () => await sample(s, 'chat_pending_exchanges_settled_total', { charged: 'true' }) === 1, { what: 'one settled' })

  // Postgres refuses the usage insert once: the reply is retried in the background and lands.
  await sql`create function fail_usage() returns trigger language plpgsql as $$ begin raise exception 'usage unavailable'; end $$`.execute(s.deps.db)
  await sql`create trigger fail_usage before insert on usage for each row execute function fail_usage()`.execute(s.deps.db)
  t.equal((await s.send(1, session.id, 'remember me')).statusCode, 503)
  t.equal(await sample(s, 'chat_record_retries_total', { what: 'record reply', outcome: 'started' }), 1)
  await sql`drop trigger fail_usage on usage`.execute(s.deps.db)
  await waitFor(async () => await sample(s, 'chat_record_retries_total', { what: 'record reply', outcome: 'landed' }) === 1, { what: 'the retry landed' })
})
