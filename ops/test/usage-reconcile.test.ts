// usage:reconcile asks chat what it recorded and billing what it applied, and has chat re-publish the gap.
// Chat's side is a stand-in on loopback speaking the internal contract of docs/architecture.md.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { waitFor } from '@chat-platform/platform/testing'
import type { UsageRecorded } from '@chat-platform/contracts'
import { testEnv, testDeps, usageEvent, publisher } from '../../services/billing/test/helper.ts'
import { loadBillingConfig } from '@chat-platform/billing/config.ts'
import { buildApp } from '@chat-platform/billing/app.ts'
import { runOps } from '../cli.ts'
import { opsContext } from './helper.ts'

t.test('events billing never received are re-published by chat and then applied; a second run finds none', async (t) => {
  const env = await testEnv(t)
  const { deps } = await testDeps(t, env)
  const billing = buildApp(deps, loadBillingConfig(env))
  t.teardown(() => billing.close())
  const billingUrl = await billing.listen({ port: 0, host: '127.0.0.1' })
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)

  const recorded: UsageRecorded[] = Array.from({ length: 5 }, (_, i) => usageEvent(1, { occurred_at: new Date(Date.UTC(2030, 0, 1, 0, i)).toISOString() }))
  const outOfRange = usageEvent(1, { occurred_at: '2031-01-01T00:00:00.000Z' })
  // Billing got three of them; two were "lost" by JetStream.
  for (const ev of recorded.slice(0, 3)) await pub.usage(ev)
  await waitFor(() => deps.consumers.usage.stats.applied === 3, { what: 'three applied' })

  const requests: string[] = []
  const chat = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`)
    const url = new URL(req.url!, 'http://x')
    if (req.method === 'GET' && url.pathname === '/internal/usage') {
      const since = new Date(url.searchParams.get('since')!)
      const until = new Date(url.searchParams.get('until')!)
      const events = [...recorded, outOfRange].filter((e) => new Date(e.occurred_at) >= since && new Date(e.occurred_at) < until)
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ events: events.map((e) => ({ event_id: e.event_id, occurred_at: e.occurred_at })) }))
      return
    }
    if (req.method === 'POST' && url.pathname === '/internal/usage/republish') {
      let body = ''
      req.on('data', (c) => { body += c })
      req.on('end', async () => {
        const ids: string[] = JSON.parse(body).event_ids
        // What chat's outbox relay does: the same event, the same Nats-Msg-Id.
        for (const ev of recorded.filter((e) => ids.includes(e.event_id))) await pub.usage(ev)
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ requeued: ids.length }))
      })
      return
    }
    res.statusCode = 404
    res.end()
  })
  await new Promise<void>((resolve) => chat.listen(0, '127.0.0.1', resolve))
  t.teardown(() => chat.close())
  const urls = { CHAT_URL: `http://127.0.0.1:${(chat.address() as AddressInfo).port}`, BILLING_URL: billingUrl }
  const args = ['usage:reconcile', '--since', '2030-01-01T00:00:00Z', '--until', '2030-06-01T00:00:00Z']

  const dry = opsContext({ ...env, ...urls })
  t.equal(await runOps([...args, '--dry-run'], dry.make), 0)
  t.equal(dry.lines[0], 'chat recorded 5, billing applied 3, missing 2 (dry run: nothing requeued)')
  t.same(dry.lines.slice(1).sort(), recorded.slice(3).map((e) => `  missing ${e.event_id}`).sort())
  t.notOk(requests.some((r) => r.startsWith('POST')), 'a dry run asks for nothing')

  const run = opsContext({ ...env, ...urls })
  t.equal(await runOps(args, run.make), 0)
  t.equal(run.lines[0], 'chat recorded 5, billing applied 3, missing 2, requeued 2')
  await waitFor(() => deps.consumers.usage.stats.applied === 5, { what: 'the missing two applied' })

  const again = opsContext({ ...env, ...urls })
  t.equal(await runOps(args, again.make), 0)
  t.same(again.lines, ['chat recorded 5, billing applied 5, missing 0, requeued 0'])
})

t.test('an unreachable service fails the run instead of reporting a false gap', async (t) => {
  const env = await testEnv(t)
  const ops = opsContext({ ...env, CHAT_URL: 'http://127.0.0.1:1', BILLING_URL: 'http://127.0.0.1:1' })
  await t.rejects(runOps(['usage:reconcile', '--since', '2030-01-01T00:00:00Z'], ops.make), { code: 'service_unavailable' })
})
