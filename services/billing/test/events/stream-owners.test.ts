// Billing creates only its durable consumers, never chat's or auth's streams: booted first, it waits for them
// (not ready meanwhile) and consumes once their producers have created them.
import t from 'tap'
import { jetstreamManager } from '@nats-io/jetstream'
import { namespaced } from '@chat-platform/contracts'
import { waitFor } from '@chat-platform/platform/testing'
import { buildApp } from '../../src/app.ts'
import { loadBillingConfig } from '../../src/config.ts'
import { testEnv, testDeps, createProducerStreams, usageEvent, registeredEvent, publisher } from '../helper.ts'

t.test('billing started before the streams exist becomes ready once they appear, and consumes them', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env, { streams: false })
  const ns = namespaced(env.EVENTS_NAMESPACE)
  const jsm = await jetstreamManager(deps.nc)
  const streamExists = (name: string) => jsm.streams.info(name).then(() => true, () => false)
  const app = buildApp(deps, loadBillingConfig(env))
  t.teardown(() => app.close())

  await deps.start()
  t.notOk(await streamExists(ns.streams.CHAT_USAGE.name), 'billing did not create chat\'s stream')
  t.notOk(await streamExists(ns.streams.AUTH_EVENTS.name), 'nor auth\'s')
  const waiting = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(waiting.statusCode, 503, 'not ready while its consumers wait')
  t.match(waiting.json().checks.consumers, /failing: consumer billing-\w+ waits for stream .*_(CHAT_USAGE|AUTH_EVENTS)/)
  t.equal(waiting.json().checks.postgres, 'ok')

  // The producers boot: their streams appear, billing binds its durables and becomes ready.
  await createProducerStreams(deps, env.EVENTS_NAMESPACE)
  await waitFor(async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200, { what: 'ready once the streams exist', timeoutMs: 15_000 })
  const pub = publisher(deps, env.EVENTS_NAMESPACE)
  await pub.registered(registeredEvent(3))
  await pub.usage(usageEvent(3, { prompt_tokens: 7, completion_tokens: 0 }))
  await waitFor(() => deps.consumers.usage.stats.applied === 1 && deps.consumers.signup.stats.applied === 1, { what: 'both consumers applied their event' })
  const acc = await deps.db.selectFrom('accounts').select('balance').where('user_id', '=', 3).executeTakeFirstOrThrow()
  t.equal(acc.balance, 1000 - 7)
  const info = await jsm.streams.info(ns.streams.CHAT_USAGE.name)
  t.equal(info.config.max_age, 24 * 3600 * 1e9, 'the stream keeps its producer\'s configuration')
})

t.test('stop() while waiting for a stream ends the wait', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env, { streams: false })
  await deps.start()
  await t.rejects(deps.consumers.usage.ready(), /waits for stream/)
  await deps.stop()
  await t.resolves(deps.consumers.usage.ready(), 'a stopped consumer waits for nothing')
  await createProducerStreams(deps, env.EVENTS_NAMESPACE)
  const jsm = await jetstreamManager(deps.nc)
  await t.rejects(jsm.consumers.info(namespaced(env.EVENTS_NAMESPACE).streams.CHAT_USAGE.name, 'billing-usage'), /not found/, 'no durable created after stop')
})
