// Order callback throughput: WeChat Pay's signed, encrypted payment callbacks (from the fake WeChat Pay) posted to
// POST /api/billing/wechatpay/notify through the gateway, against the same count of authenticated GET
// /api/user/balance through the gateway at the same concurrency, and the raw verify + decrypt cost in process.
import { performance } from 'node:perf_hooks'
import pg from 'pg'
import { request } from 'undici'
// Not a dependency of the bench package (the lockfile is shared): the package's sources, by path.
import { clientConfig, generateKeySet, merchantEnv, startFakeWechatPay } from '@chat-platform/wechatpay/testing'
import { createWechatPayClient, type SignedNotification } from '@chat-platform/wechatpay'
import type { BenchContext } from '../context.ts'
import { agent, createUsers, expectOk, api } from '../http.ts'
import { cpuMeter } from '../procs.ts'
import { round } from '../stats.ts'
import { pidOf, restartWith } from '../system-control.ts'

/** Runs `n` jobs, `concurrency` at a time; returns the seconds taken and the statuses seen. */
async function pool (n: number, concurrency: number, job: (i: number) => Promise<number>): Promise<{ seconds: number, statuses: Record<string, number> }> {
  const statuses: Record<string, number> = {}
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const status = await job(next++).catch(() => 0)
      statuses[status] = (statuses[status] ?? 0) + 1
    }
  }))
  return { seconds: (performance.now() - t0) / 1000, statuses }
}

export async function callbacksSection (ctx: BenchContext): Promise<void> {
  const c = ctx.profile.callbacks
  const { system } = ctx
  const gw = system.gatewayUrl
  const keys = await generateKeySet()
  const fake = await startFakeWechatPay({ keys })
  ctx.teardowns.teardown(() => fake.close())
  const restore = await restartWith(ctx, 'billing', {
    ...merchantEnv(keys, fake.url),
    // No poller asking WeChat Pay about pending orders in the middle of the measurement.
    ORDER_POLL_MS: '0'
  })
  const db = new pg.Pool({ connectionString: system.databaseUrl, max: 2 })
  try {
    const users = await createUsers(gw, 4, 0)
    // A few more orders than measured: their callbacks warm the path up.
    const warm = Math.min(20, c.orders)
    ctx.log(`callbacks: creating ${c.orders + warm} native orders through the gateway`)
    const orders: { no: string, tokens: number, user: number }[] = []
    await pool(c.orders + warm, 4, async (i) => {
      const u = users[i % users.length]
      const o = await expectOk<{ order_no: string, tokens: number }>('create order', api(gw, 'POST', '/api/billing/orders', { token: u.token, body: { package_id: 'starter', channel: 'native' } }))
      orders.push({ no: o.order_no, tokens: o.tokens, user: u.id })
      return 200
    })
    if (orders.length !== c.orders + warm) throw new Error(`only ${orders.length} of ${c.orders + warm} orders were created`)
    // Built before the clock starts: WeChat Pay's side (RSA signature, AES-GCM) is not the system under test.
    const notifications: SignedNotification[] = orders.map((o) => { fake.markPaid(o.no); return fake.notification(o.no) })

    // The raw cost of what billing must do with each callback before touching its database: verify and decrypt.
    const client = createWechatPayClient(clientConfig(keys, fake.url))
    const v0 = performance.now()
    for (const n of notifications) client.verifyNotification(n.headers, n.body)
    const verifyUs = ((performance.now() - v0) * 1000) / notifications.length

    const pids = { gateway: pidOf(ctx, 'gateway'), billing: pidOf(ctx, 'billing') }
    const notifyUrl = `${gw}/api/billing/wechatpay/notify`
    const post = async (i: number, offset = 0) => {
      const n = notifications[offset + i]
      const res = await request(notifyUrl, { method: 'POST', headers: { ...n.headers, 'content-type': 'application/json' }, body: n.body, dispatcher: agent })
      await res.body.dump()
      return res.statusCode
    }
    const balanceUrl = `${gw}/api/user/balance`
    const get = async (i: number) => {
      const res = await request(balanceUrl, { headers: { authorization: `Bearer ${users[i % users.length].token}` }, dispatcher: agent })
      await res.body.dump()
      return res.statusCode
    }
    // Warm both paths (the warm-up callbacks are the extra orders').
    await pool(warm, c.concurrency, (i) => post(i, c.orders))
    await pool(warm, c.concurrency, get)
    await db.query('select 1')
    const m1 = cpuMeter(pids)
    const cb = await pool(c.orders, c.concurrency, (i) => post(i))
    const cbCpu = m1()
    const m2 = cpuMeter(pids)
    const bal = await pool(c.orders, c.concurrency, get)
    const balCpu = m2()
    const per = (v: number | null) => v === null ? Number.NaN : (v * 1000) / c.orders
    ctx.log(`callbacks: ${c.orders} callbacks in ${cb.seconds.toFixed(2)} s (${JSON.stringify(cb.statuses)}), ${c.orders} balance reads in ${bal.seconds.toFixed(2)} s (${JSON.stringify(bal.statuses)}); verify+decrypt ${verifyUs.toFixed(0)} µs in process`)

    const { rows } = await db.query<{ paid: number, credited: string }>(
      `select (select count(*)::int from billing.orders where order_no = any($1::text[]) and status = 'paid') as paid,
              (select coalesce(sum(change_amount), 0) from billing.transactions where user_id = any($2::bigint[]) and kind = 'payment') as credited`,
      [orders.map((o) => o.no), users.map((u) => u.id)])
    const expected = orders.reduce((s, o) => s + o.tokens, 0)
    if (rows[0].paid !== orders.length || Number(rows[0].credited) !== expected) {
      ctx.results.notes.push(`callbacks: ${rows[0].paid} of ${orders.length} orders paid, ${rows[0].credited} tokens credited of ${expected} (each order must be credited exactly once).`)
    }
    if ((cb.statuses['204'] ?? 0) !== c.orders) ctx.results.notes.push(`callbacks: answers ${JSON.stringify(cb.statuses)} (WeChat Pay expects 204 for each).`)

    const cbRate = c.orders / cb.seconds
    const balRate = c.orders / bal.seconds
    ctx.results.figures.push(
      { key: 'callbacks_per_s', label: `Payment callbacks through the gateway (${c.orders} paid orders, ${c.concurrency} at a time)`, value: round(cbRate, 1), unit: '/s', baseline: `CPU per callback: gateway ${per(cbCpu.gateway).toFixed(0)} µs, billing ${per(cbCpu.billing).toFixed(0)} µs` },
      { key: 'callbacks_vs_balance_ratio', label: 'Callback throughput / authenticated GET /api/user/balance throughput (same count, same concurrency, through the gateway)', value: round(cbRate / balRate), unit: '×', baseline: `balance reads ${balRate.toFixed(1)}/s; CPU per read: gateway ${per(balCpu.gateway).toFixed(0)} µs, billing ${per(balCpu.billing).toFixed(0)} µs` },
      { key: 'callbacks_verify_us', label: 'Verify (RSA-SHA256 with the platform key) + decrypt (AES-256-GCM) one callback, in process', value: round(verifyUs, 1), unit: 'µs', baseline: `billing's CPU per callback ${per(cbCpu.billing).toFixed(0)} µs` }
    )
    ctx.results.details.callbacks = {
      method: `${c.orders} native orders (package starter) created through the gateway, paid at the fake WeChat Pay, their callbacks built (signed and encrypted) before the clock starts, then posted to the gateway's public notify route ${c.concurrency} at a time; baseline the same count of GET /api/user/balance with 4 users' tokens, same client and concurrency`,
      callbacks: { seconds: round(cb.seconds, 3), statuses: cb.statuses, cpu_us_per_request: { gateway: round(per(cbCpu.gateway), 1), billing: round(per(cbCpu.billing), 1) } },
      balance_reads: { seconds: round(bal.seconds, 3), statuses: bal.statuses, cpu_us_per_request: { gateway: round(per(balCpu.gateway), 1), billing: round(per(balCpu.billing), 1) } },
      verify_decrypt_us: round(verifyUs, 1),
      orders_paid: rows[0].paid,
      tokens_credited: Number(rows[0].credited),
      tokens_expected: expected
    }
  } finally {
    await db.end()
    await restore()
  }
}
