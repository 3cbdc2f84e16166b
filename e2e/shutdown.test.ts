// SIGTERM under load: billing (the real process, behind the real gateway, whose undici pool keeps sockets alive)
// drains and exits 0 within seconds while requests are in flight and the order poller is busy. It used to log
// "shutting down" and hang until close-with-grace's delay ended (exit 1): server.close() waited for the kept-alive
// socket of a request in flight at SIGTERM, which the gateway's pool keeps ~71 s (see platform's http-app.ts) once
// the load has ended. A recharge held on a row lock makes "in flight at SIGTERM" certain instead of a matter of luck.
import t from 'tap'
import pg from 'pg'
import { waitFor } from '@chat-platform/platform/testing'
import { startSystem } from './support/system.ts'
import { recharge, registerUser } from './support/client.ts'

t.setTimeout(240_000)

const system = await startSystem(t, {
  procs: ['auth', 'billing', 'gateway'],
  env: { AUTH_RATE_LIMIT_MAX: '100000', RATE_LIMIT_MAX: '100000' },
  // The simulator answers the poller; every pending order is due at once, every 50 ms.
  procEnv: { billing: { ORDER_POLL_MS: '50', ORDER_POLL_AFTER_MS: '0', LOG_LEVEL: 'info' } }
})

t.test('billing exits 0 within seconds on SIGTERM with requests in flight through the gateway and pending orders', async (t) => {
  const users = await Promise.all([1, 2, 3, 4].map(async (i) => await registerUser(system, `shutdown-${i}`)))
  for (const u of users) {
    for (let i = 0; i < 3; i++) {
      const res = await system.request('POST', '/api/billing/orders', { token: u.token, body: { package_id: 'starter', channel: 'native' } })
      t.equal(res.status, 200, 'a pending order for the poller')
    }
  }
  const ending = new AbortController()
  let answered = 0
  const load = Array.from({ length: 12 }, async (_, i) => {
    const u = users[i % users.length]
    while (!ending.signal.aborted) {
      const path = i % 2 === 0 ? '/api/user/balance' : '/api/billing/orders'
      const res = await system.request('GET', path, { token: u.token }).catch(() => null)
      if (res?.status === 200) answered++
    }
  })
  await waitFor(() => answered >= 200, { what: 'load through the gateway', timeoutMs: 60_000 })

  // A recharge waits on the account row the test holds, so it is in flight when SIGTERM arrives.
  t.equal((await recharge(system, users[0], 10)).status, 200, 'the account is open')
  const db = new pg.Client({ connectionString: system.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  await db.query('begin')
  await db.query('select * from billing.accounts where user_id = $1 for update', [users[0].id])
  const held = recharge(system, users[0], 5)
  await waitFor(async () => (await db.query("select 1 from pg_stat_activity where application_name = 'billing' and wait_event_type = 'Lock'")).rowCount! > 0,
    { what: 'the recharge waiting on the lock', timeoutMs: 30_000 })
  const billing = system.procs.get('billing')!
  const started = Date.now()
  const exit = system.stop('billing')
  await waitFor(() => billing.output.join('').includes('shutting down'), { what: 'billing shutting down', timeoutMs: 10_000 })
  // The load ends (as a bench's does): nothing comes along to reuse the recharge's socket, which is what hid the
  // hang under steady traffic (the next request on it got a 503 with Connection: close).
  ending.abort()
  await Promise.all(load)
  await db.query('commit')
  t.equal((await held).status, 200, 'the request in flight at SIGTERM is answered')
  const code = await exit
  const took = Date.now() - started
  t.equal(code, 0, 'a graceful exit, not close-with-grace giving up')
  t.ok(took < 8000, `exited in ${took} ms (the grace is 15 s)`)
})
