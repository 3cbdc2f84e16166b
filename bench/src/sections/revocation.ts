// The token revocation check: gateway CPU per authenticated request with `revoked` session revocations in its list
// (published to AUTH_REVOCATIONS the way auth's logout writes them) against one with none: two more gateway processes,
// same bundle and upstreams, started together — one on the system's namespace (it reads every revocation at boot),
// one on its own namespace (an empty revocation stream) — and loaded in turn; plus the check itself in process
// (RevocationList.isRevoked, empty vs full) and how long a real logout takes to reach the system's gateway.
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { connect } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { namespaced, Subjects, type TokenRevoked } from '@chat-platform/contracts'
import { RevocationList } from '@chat-platform/platform'
import { signTestToken, waitFor } from '@chat-platform/platform/testing'
import type { BenchContext } from '../context.ts'
import { api, createUser } from '../http.ts'
import { LoadGenerator } from '../load-client.ts'
import { cpuMeter } from '../procs.ts'
import { startExtraGateway, stopChild, type ExtraProc } from '../extra-procs.ts'
import { median, round } from '../stats.ts'

/** ns per isRevoked call on a token that is not revoked (the common case: every request of every live session). */
function checkCost (list: RevocationList, calls: number): number {
  const token = { id: 42, jti: randomUUID(), sid: randomUUID(), iat: Math.floor(Date.now() / 1000) }
  let hits = 0
  for (let i = 0; i < 10_000; i++) if (list.isRevoked(token)) hits++
  const t0 = performance.now()
  for (let i = 0; i < calls; i++) if (list.isRevoked(token)) hits++
  const ns = ((performance.now() - t0) * 1e6) / calls
  if (hits) throw new Error('a token nobody revoked was found revoked')
  return ns
}

export async function revocationSection (ctx: BenchContext): Promise<void> {
  const v = ctx.profile.revocation
  const { system } = ctx
  const gw = system.gatewayUrl
  const ns = namespaced(system.env.EVENTS_NAMESPACE)
  const subject = ns.subject(Subjects.tokenRevoked)
  const exp = Math.floor(Date.now() / 1000) + 3600
  const revocations: TokenRevoked[] = Array.from({ length: v.revoked }, () => ({ event_id: randomUUID(), occurred_at: new Date().toISOString(), sid: randomUUID(), exp }))

  // 1. The check in process: the same class the gateway runs, empty and holding every revocation published below.
  const empty = new RevocationList()
  const full = new RevocationList()
  for (const r of revocations) full.add(r)
  const emptyNs = checkCost(empty, v.micro)
  const fullNs = checkCost(full, v.micro)
  ctx.log(`revocation: isRevoked in process ${emptyNs.toFixed(1)} ns with an empty list, ${fullNs.toFixed(1)} ns with ${full.size} entries`)

  const nc = await connect({ servers: system.env.NATS_URL })
  const js = jetstream(nc)
  const load = new LoadGenerator({ cpuList: '1', pinned: false })
  const headers = { authorization: `Bearer ${ctx.users[0].token}` }
  type Which = 'full' | 'empty'
  const extra: ExtraProc[] = []
  const cpuUs: Record<Which, number[]> = { full: [], empty: [] }
  const rps: Record<Which, number[]> = { full: [], empty: [] }
  try {
    // 1. A real logout through auth (outbox → AUTH_REVOCATIONS → the gateway's feed): how long until its token is refused.
    const user = await createUser(gw, 0)
    const t0 = performance.now()
    const out = await api(gw, 'POST', '/api/auth/logout', { token: user.token, body: {} })
    if (out.status !== 200) throw new Error(`logout answered ${out.status}: ${JSON.stringify(out.body)}`)
    await waitFor(async () => (await api(gw, 'GET', '/api/user/balance', { token: user.token })).status === 401, { timeoutMs: 30_000, intervalMs: 5, what: 'the gateway refusing a logged-out token' })
    const propagationMs = performance.now() - t0
    ctx.log(`revocation: a logout reached the gateway in ${propagationMs.toFixed(1)} ms`)

    // 2. `revoked` session revocations (what as many logouts write), then one for a sentinel token: the feed is
    // ordered, so once the sentinel is refused every revocation before it is in the gateway's list.
    const sentinelSid = randomUUID()
    const sentinel = signTestToken(ctx.users[0].id, { sid: sentinelSid }, { privateKey: system.env.JWT_PRIVATE_KEY })
    const before = await api(gw, 'GET', '/api/user/balance', { token: sentinel })
    if (before.status !== 200) throw new Error(`the sentinel token was refused before its revocation (${before.status})`)
    const p0 = performance.now()
    let i = 0
    await Promise.all(Array.from({ length: 256 }, async () => {
      while (i < revocations.length) {
        const r = revocations[i++]
        await js.publish(subject, JSON.stringify(r), { msgID: r.event_id })
      }
    }))
    const last: TokenRevoked = { event_id: randomUUID(), occurred_at: new Date().toISOString(), sid: sentinelSid, exp }
    await js.publish(subject, JSON.stringify(last), { msgID: last.event_id })
    await waitFor(async () => (await api(gw, 'GET', '/api/user/balance', { token: sentinel })).status === 401, { timeoutMs: 120_000, intervalMs: 20, what: 'the gateway reading every revocation' })
    const feedS = (performance.now() - p0) / 1000
    ctx.log(`revocation: ${v.revoked} revocations published and in the gateway's list after ${feedS.toFixed(2)} s`)
    // Two fresh gateways, started together so both are equally cold: the full list (caught up at boot) and none.
    // (The empty one's list stays empty by construction; the sentinel cannot show it: billing, behind every gateway,
    // checks the same revocations and refuses the sentinel whichever gateway passed it.)
    const [full, empty] = await Promise.all([startExtraGateway(ctx, { EVENTS_NAMESPACE: system.env.EVENTS_NAMESPACE }), startExtraGateway(ctx, { EVENTS_NAMESPACE: `${system.env.EVENTS_NAMESPACE}_norev` })])
    extra.push(full, empty)
    if ((await api(full.url, 'GET', '/api/user/balance', { token: sentinel })).status !== 401) throw new Error('the extra gateway on the system\'s namespace passed the sentinel: it has not read the revocations')
    const target: Record<Which, { url: string, pid: number | undefined }> = {
      full: { url: `${full.url}/api/user/balance`, pid: full.child.pid },
      empty: { url: `${empty.url}/api/user/balance`, pid: empty.child.pid }
    }

    // 3. Gateway CPU per request, the two gateways interleaved (order swapped each round), after a warm-up of each.
    for (const w of ['full', 'empty', 'full', 'empty'] as Which[]) await load.throughput({ url: target[w].url, headers, connections: v.connections, durationS: 2 })
    for (let r = 0; r < v.rounds; r++) {
      for (const w of (r % 2 === 0 ? ['full', 'empty'] : ['empty', 'full']) as Which[]) {
        const meter = cpuMeter({ gateway: target[w].pid })
        const res = await load.throughput({ url: target[w].url, headers, connections: v.connections, durationS: v.throughputS })
        const used = meter().gateway
        if (res.non2xx || res.errors) ctx.results.notes.push(`revocation: ${res.non2xx} non-2xx and ${res.errors} failed requests in a run against the gateway with the ${w} list.`)
        cpuUs[w].push(used === null || res.ok === 0 ? Number.NaN : (used * 1000) / res.ok)
        rps[w].push(res.rps)
        ctx.log(`revocation: round ${r + 1}, ${w} list: ${Math.round(res.rps)} req/s, gateway ${cpuUs[w].at(-1)!.toFixed(0)} µs CPU per request`)
      }
    }

    const perRound = cpuUs.full.map((f, r) => f / cpuUs.empty[r]).filter(Number.isFinite)
    const c = (w: Which) => median(cpuUs[w].filter(Number.isFinite))
    ctx.results.figures.push(
      { key: 'revocation_cpu_ratio', label: `Gateway CPU per authenticated request with ${v.revoked} revoked sessions in its list / with none (two fresh gateways, loaded in turn)`, value: round(median(perRound)), unit: '×', baseline: `none ${c('empty').toFixed(0)} µs (${Math.round(median(rps.empty))} req/s), ${v.revoked} revoked ${c('full').toFixed(0)} µs (${Math.round(median(rps.full))} req/s) per request` },
      { key: 'revocation_check_ns', label: `isRevoked in process with ${v.revoked} revocations (a token not revoked)`, value: round(fullNs, 1), unit: 'ns', baseline: `empty list ${emptyNs.toFixed(1)} ns` },
      { key: 'revocation_propagation_ms', label: 'Logout through auth → its token refused at the gateway', value: round(propagationMs, 1), unit: 'ms', baseline: `${v.revoked} revocations published and read by the gateway in ${feedS.toFixed(2)} s` }
    )
    ctx.results.details.revocation = {
      method: `GET /api/user/balance with one user's token (a verified-token cache hit, so the revocation check is the difference), autocannon -c ${v.connections} for ${v.throughputS} s, ${v.rounds} interleaved round(s): two extra gateway processes started together after ${v.revoked} {sid, exp} records (as logout writes them) were published straight to AUTH_REVOCATIONS: one on the system's namespace (the full list, read at boot), one on an empty revocation stream; same upstreams (billing, which checks revocations too, holds the full list behind both)`,
      cpu_us_per_request: { full: cpuUs.full.map((x) => round(x, 1)), empty: cpuUs.empty.map((x) => round(x, 1)) },
      rps: { full: rps.full.map((x) => round(x, 0)), empty: rps.empty.map((x) => round(x, 0)) },
      in_process_ns: { empty: round(emptyNs, 1), full: round(fullNs, 1), calls: v.micro },
      feed_seconds: round(feedS, 2),
      logout_propagation_ms: round(propagationMs, 1)
    }
  } finally {
    await load.close()
    for (const g of extra) await stopChild(g.child)
    await nc.drain().catch(() => {})
  }
}
