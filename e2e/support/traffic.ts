// Bounded background traffic for fault and concurrency tests: users chatting (JSON and SSE) and recharging
// with Idempotency-Keys, for a bounded number of operations and time; it stops by itself.
import { randomUUID } from 'node:crypto'
import type { System } from './system.ts'
import { createSession, listAll, sendStreaming, type User } from './client.ts'

export interface TrafficOptions {
  /** Operations per worker at most. */
  opsPerWorker: number
  /** Workers per user (each with its own session); default 1. */
  workersPerUser?: number
  /** Stop starting new operations after this long. */
  maxMs: number
  /** Delete a worker's session (and start a new one) every this many operations; 0 never. */
  deleteEvery?: number
  /** Called after each operation (tests use it to trigger a fault mid-traffic). */
  onOp?: (n: number) => unknown
}

export interface TrafficResult {
  ops: number
  statuses: Record<string, number>
  /** Recharges whose answer was lost (they may or may not have been credited): settle them with their key. */
  pending: { user: User, amount: number, key: string }[]
  /** Answers that were not problem+json or 500s: each is a failure of the system. */
  unexpected: string[]
}

const EXPECTED_FAILURES = new Set([402, 409, 429, 502, 503, 504])

export async function runTraffic (system: System, users: User[], opts: TrafficOptions): Promise<TrafficResult> {
  const result: TrafficResult = { ops: 0, statuses: {}, pending: [], unexpected: [] }
  const deadline = Date.now() + opts.maxMs
  const count = (what: string, status: number, body: unknown) => {
    result.ops++
    result.statuses[`${what} ${status}`] = (result.statuses[`${what} ${status}`] ?? 0) + 1
    if (status !== 200 && !EXPECTED_FAILURES.has(status)) result.unexpected.push(`${what} ${status} ${JSON.stringify(body).slice(0, 300)}`)
    opts.onOp?.(result.ops)
  }

  const worker = async (user: User, w: number) => {
    let sid: number | undefined
    for (let i = 0; i < opts.opsPerWorker && Date.now() < deadline; i++) {
      try {
        if (sid === undefined) sid = await createSession(system, user, `traffic ${w}`)
        const pick = (i + w) % 4
        if (pick === 0) {
          const amount = 1 + ((i * 37 + user.id) % 500)
          const key = randomUUID()
          const res = await system.request('POST', '/api/billing/recharge', { token: user.token, body: { amount }, headers: { 'idempotency-key': key } })
          if (res.status === 200) user.recharged += amount
          else result.pending.push({ user, amount, key })
          count('recharge', res.status, res.body)
        } else if (pick === 2) {
          const res = await sendStreaming(system, user.token, sid, `streamed ${w}.${i} from ${user.id}`)
          const last = res.events.at(-1)
          count('stream', res.status === 200 && last?.event === 'error' ? Number(last.data.status) : res.status, last?.data ?? res.body)
        } else {
          const res = await system.request('POST', `/api/sessions/${sid}/messages`, { token: user.token, body: { content: `message ${w}.${i} from ${user.id}` } })
          count('send', res.status, res.body)
        }
        if (opts.deleteEvery && (i + 1) % opts.deleteEvery === 0) {
          const spent = (await listAll(system, user.token, `/api/sessions/${sid}/messages`, 'oldest-first')).reduce((s, m) => s + m.tokens, 0)
          const del = await system.request('DELETE', `/api/sessions/${sid}`, { token: user.token })
          if (del.status === 200) { user.deletedUsage = (user.deletedUsage ?? 0) + spent; sid = undefined }
          count('delete', del.status, del.body)
        }
      } catch (err) {
        // A connection the gateway dropped is a failure of the system, not of the test.
        result.unexpected.push(`user ${user.id}: ${(err as Error).message}`)
      }
    }
  }
  await Promise.all(users.flatMap((u) => Array.from({ length: opts.workersPerUser ?? 1 }, (_, w) => worker(u, w))))
  return result
}

/** Retries each lost recharge with its key until it answers 200 (credited once, whether or not the first try was). */
export async function settleRecharges (system: System, pending: TrafficResult['pending'], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (const p of pending) {
    for (;;) {
      const res = await system.request('POST', '/api/billing/recharge', { token: p.user.token, body: { amount: p.amount }, headers: { 'idempotency-key': p.key } })
      if (res.status === 200) { p.user.recharged += p.amount; break }
      if (Date.now() > deadline) throw new Error(`recharge ${p.key} still answers ${res.status}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }
  pending.length = 0
}
