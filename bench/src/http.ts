// The bench's HTTP client (undici, generous connection pool) and the user setup done through the gateway.
import { randomBytes } from 'node:crypto'
import { Agent, request } from 'undici'

export const agent = new Agent({ connections: 512, pipelining: 1, headersTimeout: 120_000, bodyTimeout: 120_000 })

export interface JsonResponse<T = any> { status: number, body: T }

export async function api<T = any> (base: string, method: string, path: string, opts: { token?: string, body?: unknown, headers?: Record<string, string> } = {}): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), dispatcher: agent })
  const text = await res.body.text()
  let body: any = text
  try { body = text ? JSON.parse(text) : undefined } catch { /* not JSON */ }
  return { status: res.statusCode, body }
}

export async function expectOk<T = any> (what: string, p: Promise<JsonResponse<T>>): Promise<T> {
  const r = await p
  if (r.status !== 200) throw new Error(`${what} answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`)
  return r.body
}

export interface BenchUser { id: number, email: string, token: string }

/** Registers, logs in and recharges one user through the gateway (the public API, as a client would). */
export async function createUser (gateway: string, recharge: number): Promise<BenchUser> {
  const email = `bench-${randomBytes(6).toString('hex')}@example.com`
  const password = 'bench-password-1'
  const reg = await expectOk<{ user_id: number }>('register', api(gateway, 'POST', '/api/auth/register', { body: { email, password, nickname: 'bench' } }))
  const login = await expectOk<{ access_token: string }>('email-login', api(gateway, 'POST', '/api/auth/email-login', { body: { email, password } }))
  const token = login.access_token
  if (recharge > 0) await expectOk('recharge', api(gateway, 'POST', '/api/billing/recharge', { token, body: { amount: recharge } }))
  return { id: reg.user_id, email, token }
}

/** Creates `n` users, a few at a time (password hashing is the slow part). */
export async function createUsers (gateway: string, n: number, recharge: number, concurrency = 4): Promise<BenchUser[]> {
  const users: BenchUser[] = []
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      next++
      users.push(await createUser(gateway, recharge))
    }
  }))
  return users
}

export async function createSession (gateway: string, token: string): Promise<number> {
  const s = await expectOk<{ id: number }>('create session', api(gateway, 'POST', '/api/sessions', { token, body: { title: 'bench' } }))
  return s.id
}
