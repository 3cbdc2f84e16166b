// What the end-to-end tests do as a client of the gateway: users, messages (JSON and SSE), problem checks,
// full listings, the ledger audit and the exact-balance invariant.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { waitFor, withoutCoverage } from '@chat-platform/platform/testing'
import type { System } from './system.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const SIGNUP_BONUS = 1000

type Assert = Test

export interface User {
  id: number
  email: string
  password: string
  token: string
  /** The login's refresh token (DESIGN §6.3). */
  refreshToken?: string
  /** Recharges credited, tracked by the test. */
  recharged: number
  /** Usage of sessions the test deleted (their messages are gone, their charges stay). */
  deletedUsage?: number
}

export type Reply = Awaited<ReturnType<System['request']>>

let seq = 0
export const uniqueEmail = (tag = 'u') => `${tag}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}@e2e.test`

/** Registers a user through the gateway and logs in. */
export async function registerUser (system: System, tag = 'u'): Promise<User> {
  const email = uniqueEmail(tag)
  const password = `pw-${randomBytes(6).toString('hex')}`
  const reg = await system.request('POST', '/api/auth/register', { body: { email, password, nickname: tag } })
  if (reg.status !== 200) throw new Error(`register answered ${reg.status}: ${JSON.stringify(reg.body)}`)
  const login = await system.request('POST', '/api/auth/email-login', { body: { email, password } })
  if (login.status !== 200) throw new Error(`login answered ${login.status}: ${JSON.stringify(login.body)}`)
  return { id: reg.body.user_id, email, password, token: login.body.access_token, refreshToken: login.body.refresh_token, recharged: 0 }
}

export async function createSession (system: System, user: User, title = 'e2e'): Promise<number> {
  const res = await system.request('POST', '/api/sessions', { token: user.token, body: { title } })
  if (res.status !== 200) throw new Error(`create session answered ${res.status}: ${JSON.stringify(res.body)}`)
  return res.body.id
}

export async function recharge (system: System, user: User, amount: number, key?: string): Promise<Reply> {
  const res = await system.request('POST', '/api/billing/recharge', { token: user.token, body: { amount }, headers: key ? { 'idempotency-key': key } : {} })
  if (res.status === 200) user.recharged += amount
  return res
}

export interface SseEvent { event: string, data: any }
export interface SseReply { status: number, headers: Headers, events: SseEvent[], body?: any, raw: string }

/** Sends a message with `Accept: text/event-stream` and reads the whole answer (events, or a problem body). */
export async function sendStreaming (system: System, token: string, sessionId: number, content: string, opts: { key?: string, signal?: AbortSignal, onEvent?: (e: SseEvent) => void } = {}): Promise<SseReply> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' }
  if (opts.key) headers['idempotency-key'] = opts.key
  const res = await fetch(`${system.gatewayUrl}/api/sessions/${sessionId}/messages`, { method: 'POST', headers, body: JSON.stringify({ content }), signal: opts.signal })
  if (!res.headers.get('content-type')?.startsWith('text/event-stream')) {
    const text = await res.text()
    let body: any = text
    try { body = JSON.parse(text) } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, events: [], body, raw: text }
  }
  const events: SseEvent[] = []
  let raw = ''
  let buf = ''
  const decoder = new TextDecoder()
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    const text = decoder.decode(chunk, { stream: true })
    raw += text
    buf += text
    let i: number
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i)
      buf = buf.slice(i + 2)
      let event = 'message'
      const data: string[] = []
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
      }
      if (data.length === 0) continue
      const e = { event, data: JSON.parse(data.join('\n')) }
      events.push(e)
      opts.onEvent?.(e)
    }
  }
  return { status: res.status, headers: res.headers, events, raw }
}

/** Every item of a paged list (`limit` 200, `before_id` cursor): newest-first lists page with the last id, messages with the first. */
export async function listAll (system: System, token: string, path: string, order: 'newest-first' | 'oldest-first' = 'newest-first'): Promise<any[]> {
  const all: any[] = []
  let before: number | undefined
  for (let page = 0; page < 1000; page++) {
    const res = await system.request('GET', `${path}?limit=200${before ? `&before_id=${before}` : ''}`, { token })
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${JSON.stringify(res.body)}`)
    const rows = res.body as any[]
    if (order === 'newest-first') all.push(...rows)
    else all.unshift(...rows)
    if (rows.length < 200) return all
    before = order === 'newest-first' ? rows[rows.length - 1].id : rows[0].id
  }
  throw new Error(`${path}: too many pages`)
}

/** Σ tokens over every message of every (remaining) session of the user: the priced usage with ratios 1. */
export async function pricedUsage (system: System, user: User): Promise<number> {
  let sum = 0
  for (const s of await listAll(system, user.token, '/api/sessions')) {
    for (const m of await listAll(system, user.token, `/api/sessions/${s.id}/messages`, 'oldest-first')) sum += m.tokens
  }
  return sum
}

/**
 * Waits until billing has applied everything, then checks the user's money to the token: balance =
 * bonus + recharges − priced usage (from the messages), and the transactions list agrees with itself
 * (Σ change_amount = balance, balance_after chains) and with the messages (Σ usage rows = priced usage).
 */
export async function assertExactBalance (t: Assert, system: System, user: User, opts: { usage?: number, timeoutMs?: number } = {}) {
  const usage = opts.usage ?? (await pricedUsage(system, user)) + (user.deletedUsage ?? 0)
  const expected = SIGNUP_BONUS + user.recharged - usage
  let last: unknown
  try {
    await waitFor(async () => {
      const res = await system.request('GET', '/api/user/balance', { token: user.token })
      last = res.body
      return res.status === 200 && res.body.balance === expected
    }, { timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 200, what: `balance ${expected}` })
  } catch {
    t.equal((last as { balance?: number })?.balance, expected, `user ${user.id}: balance = ${SIGNUP_BONUS} + ${user.recharged} − ${usage}`)
    return
  }
  const txs = await listAll(system, user.token, '/api/billing/transactions')
  const chrono = [...txs].reverse()
  let running = 0
  let chained = true
  let spent = 0
  let credited = 0
  for (const tx of chrono) {
    running += tx.change_amount
    if (tx.balance_after !== running || tx.user_id !== user.id) chained = false
    if (tx.change_amount < 0) spent -= tx.change_amount
    else credited += tx.change_amount
  }
  t.equal(running, expected, `user ${user.id}: Σ change_amount = balance ${expected}`)
  t.ok(chained, `user ${user.id}: balance_after chains over ${txs.length} rows`)
  t.equal(spent, usage, `user ${user.id}: usage rows total the priced usage ${usage}`)
  t.equal(credited, SIGNUP_BONUS + user.recharged, `user ${user.id}: credits are the bonus and the recharges`)
  t.equal(txs.filter((x) => x.description === '注册赠送').length, 1, `user ${user.id}: one signup bonus`)
}

/** `pnpm ops billing:audit` against the system's database; returns its exit code and output. */
export async function runAudit (system: System): Promise<{ code: number | null, output: string }> {
  const child = spawn('pnpm', ['--silent', 'ops', 'billing:audit'], { cwd: ROOT, env: withoutCoverage({ ...process.env, ...system.env }), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (b) => { output += b })
  child.stderr.on('data', (b) => { output += b })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, output }
}

export async function assertAuditPasses (t: Assert, system: System) {
  const { code, output } = await runAudit(system)
  t.equal(code, 0, `billing:audit passes${code === 0 ? '' : `:\n${output}`}`)
  t.match(output, /ledger ok/)
}

const LEAKS: [RegExp, string][] = [
  [/\bat .+:\d+:\d+\)?/, 'a stack frame'],
  [/\n\s+at /, 'a stack trace'],
  [/"stack"/, 'a stack property'],
  [/\b(select|insert into|update|delete from)\b.+\b(from|set|values|where)\b/i, 'SQL'],
  [/\b(relation|column) "[^"]+"/i, 'a Postgres message'],
  [/\b(127\.0\.0\.1|localhost|0\.0\.0\.0|::1)\b/i, 'an internal host'],
  [/[a-z0-9\]]:\d{4,5}\b/i, 'a port'],
  [/\bE(CONNREFUSED|CONNRESET|TIMEDOUT|NOTFOUND|PIPE)\b/, 'a socket error'],
  [/postgres(ql)?:\/\/|nats:\/\/|redis:\/\//i, 'a connection URL'],
  [/\/(work|home|usr|tmp)\/|node_modules/, 'a file path']
]

/** Asserts that a body shows nothing internal: no stack, SQL, host, port, socket error or path. */
export function assertNoLeak (t: Assert, body: unknown, what = 'error body') {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  for (const [re, name] of LEAKS) {
    if (re.test(text)) t.notMatch(text, re, `${what} carries ${name}`)
  }
}

/** A problem+json answer with this status and code, a request id, and nothing internal in it. */
export function assertProblem (t: Assert, res: { status: number, headers: Headers, body: any }, status: number, code: string, what = '') {
  const label = `${what ? `${what}: ` : ''}${status} ${code}`
  t.equal(res.status, status, `${label} (status, got ${JSON.stringify(res.body).slice(0, 300)})`)
  t.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/, `${label} (problem+json)`)
  t.equal(res.body?.code, code, `${label} (code)`)
  t.equal(res.body?.status, status, `${label} (body status)`)
  t.ok(typeof res.body?.detail === 'string' && typeof res.body?.title === 'string' && typeof res.body?.type === 'string' && typeof res.body?.request_id === 'string', `${label} (RFC 9457 fields)`)
  assertNoLeak(t, res.body, label)
}
